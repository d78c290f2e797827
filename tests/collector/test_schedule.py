"""Wall-clock slots and jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kamstrup382.collector.schedule import jitter_offset, next_slot, slot_of


@pytest.mark.parametrize(
    ("now", "interval", "slot"),
    [
        ("2026-03-01T10:07:31", timedelta(minutes=15), "2026-03-01T10:00:00"),
        ("2026-03-01T10:15:00", timedelta(minutes=15), "2026-03-01T10:15:00"),
        ("2026-03-01T10:29:59.999999", timedelta(minutes=15), "2026-03-01T10:15:00"),
        ("2026-03-01T10:59:00", timedelta(hours=1), "2026-03-01T10:00:00"),
        ("2026-03-01T23:59:00", timedelta(days=1), "2026-03-01T00:00:00"),
        ("2026-03-01T10:00:04.5", timedelta(seconds=3), "2026-03-01T10:00:03"),
    ],
)
def test_slots_align_to_the_wall_clock(now: str, interval: timedelta, slot: str) -> None:
    when = datetime.fromisoformat(now).replace(tzinfo=UTC)
    start = datetime.fromisoformat(slot).replace(tzinfo=UTC)
    assert slot_of(when, interval) == start
    assert next_slot(when, interval) == start + interval


def test_slot_of_other_time_zone_is_the_same_instant() -> None:
    when = datetime(2026, 3, 1, 11, 7, tzinfo=timezone(timedelta(hours=1)))  # 10:07 UTC
    assert slot_of(when, timedelta(minutes=15)) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_every_quarter_hour_of_a_day_is_a_slot() -> None:
    day = datetime(2026, 6, 1, tzinfo=UTC)
    interval = timedelta(minutes=15)
    slots = {slot_of(day + timedelta(seconds=s), interval) for s in range(0, 86400, 61)}
    assert sorted(slots) == [day + i * interval for i in range(96)]


def test_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        slot_of(datetime.now(UTC), timedelta(0))


def test_jitter_is_within_bounds_stable_and_spread() -> None:
    slot = datetime(2026, 1, 1, tzinfo=UTC)
    jitter = timedelta(seconds=60)
    offsets = [jitter_offset(f"m{i}", slot, jitter) for i in range(200)]
    assert all(timedelta(0) <= o < jitter for o in offsets)
    assert offsets == [jitter_offset(f"m{i}", slot, jitter) for i in range(200)]
    assert len(set(offsets)) > 150
    assert max(offsets) - min(offsets) > timedelta(seconds=50)
    assert jitter_offset("m1", slot, jitter) != jitter_offset("m1", slot + jitter, jitter)
    assert jitter_offset("m1", slot, timedelta(0)) == timedelta(0)
