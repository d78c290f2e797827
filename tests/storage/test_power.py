"""Per-minute power and the live figures, in both backends (migration 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kamstrup382.storage import LivePower, PowerMinute, Storage

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_minutes_are_kept_replaced_read_and_pruned(storage: Storage) -> None:
    minutes = [
        PowerMinute("house", T0 + i * MINUTE, 40 + i, (40 + i) * 60.0, 2300.0 + i, 2500.5 + i)
        for i in range(5)
    ]
    storage.store_power([*minutes, PowerMinute("garage", T0, 0, 0.0)])
    assert storage.power_minutes("house") == minutes
    assert storage.power_minutes("garage") == [PowerMinute("garage", T0, 0, 0.0, None, None)]
    again = PowerMinute("house", T0, 41, 2460.0, 2400.0, 2500.0)  # the minute written again
    storage.store_power([again])
    assert storage.power_minutes("house", since=T0, until=T0 + 2 * MINUTE) == [again, minutes[1]]
    assert storage.prune_power(T0 + 3 * MINUTE) == 4  # 3 of house, 1 of garage
    assert storage.power_minutes("house") == minutes[3:]
    assert storage.power_minutes("garage") == []


def test_one_live_figure_per_meter(storage: Storage) -> None:
    first = LivePower("house", T0, 2400.5, Decimal("1234.567"), 10, True)
    storage.store_power(live=[first, LivePower("garage", T0, None, None, 0, False)])
    newer = LivePower("house", T0 + MINUTE, 0.0, Decimal("1234.600"), 43, False)
    storage.store_power(live=[newer])
    assert storage.live_power() == [LivePower("garage", T0, None, None, 0, False), newer]
