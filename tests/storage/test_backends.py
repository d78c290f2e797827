"""Behaviour both backends share, checked on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from kamstrup382.errors import StorageError
from kamstrup382.protocol import MeterValues
from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage
from tests.storage.samples import START, STEP, failure, reading


def test_every_field_comes_back_exactly(storage: Storage) -> None:
    records = [
        reading("house", 0, peak="0.0"),
        reading("house", 1, peak="999999.9", type_number=None),
        replace(
            reading("barn", 2),
            values=MeterValues(
                customer_number="00000007",
                energy=Decimal(9999999),
                tariff_1=Decimal(0),
                tariff_2=Decimal(9999999),
                hour_counter=Decimal(9999999),
                pulse_input=Decimal(1),
                actual_peak=Decimal("0.1"),
                last_month_peak=Decimal("123456.7"),
            ),
            raw=bytes(range(128)),
            answer_delay=0.1 + 0.2,
            duration=1e-9,
        ),
    ]
    assert storage.record(records) == 3
    back = list(storage.readings())
    assert sorted(back, key=lambda r: r.meter) == sorted(records, key=lambda r: r.meter)
    for got in back:
        assert got.slot.utcoffset() == timedelta(0)
        assert got.read_at.utcoffset() == timedelta(0)
        assert isinstance(got.values.energy, Decimal)
        assert isinstance(got.raw, bytes)
    # the exponent too: a peak keeps its one decimal, a counter has none
    barn = next(r for r in back if r.meter == "barn")
    assert str(barn.values.actual_peak) == "0.1"
    assert str(barn.values.energy) == "9999999"
    assert barn.values.customer_number == "00000007"
    assert storage.latest("house") == records[1]
    assert storage.latest("nobody") is None


def test_naive_datetimes_are_taken_as_utc(storage: Storage) -> None:
    r = reading("house", 0)
    naive = replace(r, slot=r.slot.replace(tzinfo=None), read_at=r.read_at.replace(tzinfo=None))
    storage.record([naive])
    assert list(storage.readings()) == [r]
    assert list(storage.readings(since=r.read_at.replace(tzinfo=None))) == [r]


def test_writes_are_idempotent_on_meter_and_slot(storage: Storage) -> None:
    batch = [reading("house", i) for i in range(5)]
    fails = [failure("house", 7)]
    assert storage.record(batch, fails) == 5
    assert storage.record(batch, fails) == 0
    # a second reading for a stored slot (e.g. a takeover) keeps the first one
    other = replace(batch[2], read_at=batch[2].read_at + timedelta(seconds=30), attempts=3)
    assert storage.record([other, reading("house", 5)]) == 1
    stored = list(storage.readings())
    assert len(stored) == 6
    assert stored[2] == batch[2]
    [status] = storage.status()
    assert (status.successes, status.failures) == (6, 1)


def test_a_failing_batch_leaves_nothing(storage: Storage) -> None:
    storage.record([reading("house", 0)])
    good = [reading("house", i) for i in range(1, 50)]
    bad = replace(failure("house", 60), message=None)  # type: ignore[arg-type]
    with pytest.raises(StorageError) as info:
        storage.record(good, [failure("house", 61), bad], outbox=True)
    assert info.value.__cause__ is not None
    assert [r.slot for r in storage.readings()] == [START]
    assert all(a.ok for a in storage.attempts())  # no failure row either
    assert storage.outbox_pending() == []
    # the storage is usable afterwards
    assert storage.record(good) == 49


def test_malformed_records_raise_storage_error_before_writing(storage: Storage) -> None:
    with pytest.raises(StorageError, match="malformed"):
        storage.record([reading("house", 0), replace(reading("house", 1), values=None)])  # type: ignore[arg-type]
    assert list(storage.readings()) == []


def test_outbox_holds_new_readings_in_order(storage: Storage) -> None:
    first = [reading("b", 0), reading("a", 0), reading("c", 0)]
    second = [reading("a", 1), reading("b", 1)]
    storage.record(first, outbox=True)
    storage.record(first + second, outbox=True)  # the repeated ones are not queued again
    storage.record([reading("z", 9)])  # outbox=False: not queued
    pending = storage.outbox_pending(10)
    assert [item[1] for item in pending] == first + second
    ids = [item[0] for item in pending]
    assert ids == sorted(ids)
    assert [item[1] for item in storage.outbox_pending(2)] == first[:2]
    storage.outbox_done(ids[:3])
    assert [item[1] for item in storage.outbox_pending()] == second
    storage.outbox_done([])
    storage.outbox_done(ids)
    assert storage.outbox_pending() == []
    assert len(list(storage.readings())) == 6


def test_consumption_is_correct_across_the_register_wrap(storage: Storage) -> None:
    rows = [
        reading("house", 0, energy=9_999_990, tariff_1=9_999_999, tariff_2=5),
        reading("house", 1, energy=9_999_998, tariff_1=3, tariff_2=5),
        reading("house", 2, energy=4, tariff_1=9, tariff_2=5),
        reading("house", 3, energy=4, tariff_1=9, tariff_2=6),
        reading("barn", 0, energy=100, tariff_1=50, tariff_2=50),
        reading("barn", 5, energy=120, tariff_1=60, tariff_2=60),
    ]
    storage.record(rows)
    got = list(storage.consumption())
    assert [(c.meter, int(c.energy), int(c.tariff_1), int(c.tariff_2)) for c in got] == [
        ("barn", 20, 10, 10),
        ("house", 8, 4, 0),
        ("house", 6, 6, 0),
        ("house", 0, 0, 1),
    ]
    assert got[0].start == rows[4].read_at
    assert got[0].end == rows[5].read_at
    assert all(isinstance(c.energy, Decimal) for c in got)
    # a range selects the readings in [since, until): the pairs inside it
    house = list(storage.consumption("house", since=rows[1].read_at, until=rows[3].read_at))
    assert [(c.start, c.end, c.energy) for c in house] == [
        (rows[1].read_at, rows[2].read_at, Decimal(6))
    ]


def test_attempts_and_status(storage: Storage) -> None:
    storage.record(
        [reading("house", 0), reading("house", 2), reading("barn", 1)],
        [failure("house", 1, "bcc"), failure("house", 3, "timeout"), failure("shed", 0)],
    )
    attempts = list(storage.attempts())
    assert [a.at for a in attempts] == sorted(a.at for a in attempts)
    assert [(a.meter, a.ok, a.kind) for a in attempts if a.meter == "house"] == [
        ("house", True, None),
        ("house", False, "bcc"),
        ("house", True, None),
        ("house", False, "timeout"),
    ]
    assert len(list(storage.attempts("house", since=START + STEP, until=START + 3 * STEP))) == 2
    assert storage.meters() == ["barn", "house", "shed"]
    status = {s.meter: s for s in storage.status()}
    house = status["house"]
    assert house.last_success == reading("house", 2).read_at
    assert house.last_error == failure("house", 3).failed_at
    assert house.last_error_kind == "timeout"
    assert house.last_error_message == failure("house", 3).message
    assert (house.successes, house.failures, house.success_rate) == (2, 2, 0.5)
    assert status["shed"].last_success is None
    assert status["shed"].success_rate == 0.0
    assert status["barn"].last_error is None
    assert status["barn"].success_rate == 1.0


def test_readings_filter_by_meter_and_half_open_range(storage: Storage) -> None:
    storage.record([reading(m, i) for m in ("a", "b") for i in range(10)])
    since, until = reading("a", 3).read_at, reading("a", 7).read_at
    got = list(storage.readings("a", since, until))
    assert [r.slot for r in got] == [START + i * STEP for i in range(3, 7)]
    assert {r.meter for r in storage.readings(since=since)} == {"a", "b"}
    # a range given in another zone means the same instants
    cet = since.astimezone(ZoneInfo("Europe/Copenhagen"))
    assert list(storage.readings("a", cet, until)) == got


def test_threads_write_and_read_at_once(storage: Storage) -> None:
    errors: list[BaseException] = []

    def write(meter: str) -> None:
        try:
            for i in range(0, 200, 20):
                storage.record([reading(meter, j) for j in range(i, i + 20)], outbox=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(10):
                sum(1 for _ in storage.readings())
                storage.status()
                storage.latest("w0")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(3)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(storage.readings())) == 600
    assert len(storage.outbox_pending(1000)) == 600


def test_an_abandoned_stream_releases_its_connection(storage: Storage) -> None:
    storage.record([reading("house", i) for i in range(50)])
    for _ in range(30):
        stream = storage.readings()
        next(stream)
        stream.close()  # type: ignore[attr-defined]
    assert len(list(storage.readings())) == 50


def test_closed_storage_raises(storage_url: str) -> None:
    storage = open_storage(storage_url)
    storage.close()
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        storage.record([reading()])
    with pytest.raises(StorageError, match="closed"):
        list(storage.readings())


def test_times_are_utc_whatever_zone_was_given(storage: Storage) -> None:
    r = reading("house", 0)
    zoned = replace(r, read_at=r.read_at.astimezone(ZoneInfo("America/New_York")))
    storage.record([zoned])
    [back] = storage.readings()
    assert back.read_at == r.read_at
    assert back.read_at.utcoffset() == timedelta(0)
    assert back.read_at.astimezone(UTC) == datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)


def test_last_bcc_algorithms_come_from_each_meters_newest_reading(storage: Storage) -> None:
    storage.record(
        [
            replace(reading("house", 2), bcc_algorithm="xor"),  # stored first, but newer
            reading("house", 1),
            reading("barn", 0),
            replace(reading("barn", 1), bcc_algorithm="xor"),
        ],
        [failure("shed", 0)],
    )
    assert storage.last_bcc_algorithms(["house", "barn", "shed", "new", "house"]) == {
        "house": "xor",
        "barn": "xor",
    }
    storage.record([reading("barn", 2)])
    assert storage.last_bcc_algorithms(["barn"]) == {"barn": "sum7"}
    assert storage.last_bcc_algorithms([]) == {}
