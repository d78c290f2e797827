"""The KMP judge: a reading is checked once (the CRC sees line damage), by the 382's rules
and against the meter's last accepted reading; another serial is another meter, taken as a
replacement."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kamstrup382.collector.kmp_history import KmpHistory
from kamstrup382.errors import ImplausibleError
from kamstrup382.protocol.kmp import RegisterValue
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.storage import KmpReadingRecord

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
KWH, W = 2, 21


def reading(energy: str, *, serial: int = 7, power: str = "500") -> KmpReading:
    return KmpReading(
        port="socket://127.0.0.1:1",
        baud=9600,
        requested_at=T0,
        duration=0.3,
        registers=(
            RegisterValue.of(0x0001, KWH, Decimal(energy)),
            RegisterValue.of(0x03FF, W, Decimal(power)),
        ),
        missing=(),
        exchanges=3,
        attempts=3,
        received=60,
        meter_type=0x0382,
        software_revision="A1",
        serial=serial,
    )


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_first_reading_is_accepted_once_with_its_identity() -> None:
    history = KmpHistory()
    judge = history.judge("flat", lambda r: at(0))
    judge(reading("53"))
    assert judge.accepted is not None
    assert dict(judge.accepted.values) == {"energy": Decimal(53), "power": Decimal(500)}
    assert (judge.accepted.meter_type, judge.accepted.serial) == (0x0382, 7)
    assert judge.accepted.at == at(0)


def test_the_next_reading_follows_the_last_accepted() -> None:
    history = KmpHistory()
    first = history.judge("flat", lambda r: at(0))
    first(reading("53"))
    assert first.accepted is not None
    history.accepted("flat", first.accepted)
    history.judge("flat", lambda r: at(15))(reading("54"))
    with pytest.raises(ImplausibleError) as down:
        history.judge("flat", lambda r: at(15))(reading("52"))
    assert down.value.rule == "counter_down"
    with pytest.raises(ImplausibleError) as fast:  # 69 kW for 15 min is 17.25 kWh
        history.judge("flat", lambda r: at(15))(reading("72"))
    assert fast.value.rule == "counter_rate"


def test_another_serial_is_a_replaced_meter(caplog: pytest.LogCaptureFixture) -> None:
    history = KmpHistory()
    history.load(
        [
            KmpReadingRecord(
                meter="flat",
                slot=T0,
                read_at=at(0),
                meter_type=0x0382,
                software_revision="A1",
                serial=7,
                values={"energy": Decimal(9000)},
                duration=0.3,
                exchanges=3,
                attempts=3,
            )
        ]
    )
    judge = history.judge("flat", lambda r: at(15))
    with caplog.at_level(logging.WARNING):
        judge(reading("12", serial=8))  # a new meter starts low: not a counter going down
    assert judge.accepted is not None and judge.accepted.serial == 8
    assert "serial number 8 where 7 was read before" in caplog.text
    with pytest.raises(ImplausibleError):  # the same meter going down is still refused
        history.judge("flat", lambda r: at(15))(reading("12", serial=7))


def test_a_reading_without_identity_is_refused() -> None:
    anonymous = KmpReading(
        port="x",
        baud=9600,
        requested_at=T0,
        duration=0.1,
        registers=(),
        missing=(),
        exchanges=1,
        attempts=1,
        received=10,
    )
    with pytest.raises(ImplausibleError) as caught:
        KmpHistory().judge("flat", lambda r: at(0))(anonymous)
    assert caught.value.rule == "identity"


def test_forget() -> None:
    history = KmpHistory()
    judge = history.judge("flat", lambda r: at(0))
    judge(reading("53"))
    assert judge.accepted is not None
    history.accepted("flat", judge.accepted)
    assert len(history) == 1
    history.forget(["flat", "other"])
    assert history.last("flat") is None
