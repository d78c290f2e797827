"""KMP readings in both backends: exact values, absent registers, idempotence, the outbox, the
reads that mix both protocols, consumption, and what "auto" found per meter."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from decimal import Decimal

import pytest

from kamstrup382.errors import StorageError
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.storage import KmpReadingRecord, ReadingRecord, Storage
from kamstrup382.storage.rows import KMP_REGISTER_COLUMNS
from kamstrup382.storage.url import open_storage
from tests.storage.samples import START, STEP, failure, kmp_reading, reading

LONG = timedelta(minutes=5)


def _digits(record: KmpReadingRecord) -> dict[str, str]:
    return {name: str(value) for name, value in record.values.items()}


def test_the_table_has_a_column_for_every_register_of_the_382_set() -> None:
    assert tuple(r.name for r in KMP_382_REGISTERS) == KMP_REGISTER_COLUMNS


def test_a_kmp_reading_comes_back_exactly_with_its_absent_registers_absent(
    storage: Storage,
) -> None:
    sent = [kmp_reading("flat", i) for i in range(3)]
    assert storage.record(sent) == 3
    back = list(storage.readings())
    assert back == sent
    for got, original in zip(back, sent, strict=True):
        assert isinstance(got, KmpReadingRecord)
        assert _digits(got) == _digits(original)  # "229.0", "0.00": the meter's digits
        assert "energy_out_hires" not in got.values  # not sent: not stored as 0
        assert got.serial == 5_098_765_432 + sent.index(original)
    big = kmp_reading("big", 0, energy="123456789012.3456789")
    storage.record([big])
    assert _digits(storage.latest("big")) == _digits(big)  # type: ignore[arg-type]


def test_a_kmp_reading_is_stored_once_per_slot_beside_mode_a(storage: Storage) -> None:
    batch = [reading("house", 0), kmp_reading("flat", 0), kmp_reading("flat", 1)]
    assert storage.record(batch, [failure("barn", 0)]) == 3
    changed = dataclasses.replace(kmp_reading("flat", 1), attempts=9)
    assert storage.record([changed, kmp_reading("flat", 2), reading("house", 0)]) == 1
    flat = list(storage.readings("flat"))
    assert [r.attempts for r in flat] == [2, 3, 2]  # the first write of slot 1 kept
    assert storage.meters() == ["barn", "flat", "house"]


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"energy": Decimal("NaN")}, "finite"),
        ({"energy": Decimal(1), "tariff_1": Decimal(1)}, "no column"),
        ({"voltage_l1": 230.1}, "Decimal"),
    ],
)
def test_a_malformed_kmp_reading_stores_nothing_of_its_batch(
    storage: Storage, values: dict[str, object], why: str
) -> None:
    bad = dataclasses.replace(kmp_reading("flat", 1), values=values)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match=why):
        storage.record([reading("house", 0), kmp_reading("flat", 0), bad], outbox=True)
    assert list(storage.readings()) == []
    assert storage.outbox_pending() == []


def test_a_meter_read_in_both_protocols_reads_back_in_time_order(storage: Storage) -> None:
    mode_a = [reading("both", i) for i in (0, 2, 4)]
    kmp = [kmp_reading("both", i) for i in (1, 3)]
    storage.record([*mode_a, *kmp, reading("after", 0), kmp_reading("zz", 0)])
    both = list(storage.readings("both"))
    assert [(type(r).__name__, r.slot) for r in both] == [
        (type(r).__name__, r.slot) for r in sorted([*mode_a, *kmp], key=lambda r: r.read_at)
    ]
    assert [r.meter for r in storage.readings()] == ["after", *["both"] * 5, "zz"]
    since, until = START + STEP, START + 4 * STEP
    assert [r.slot for r in storage.readings("both", since, until)] == [
        START + i * STEP for i in (1, 2, 3)
    ]
    # the newest of either protocol
    latest = storage.latest("both")
    assert isinstance(latest, ReadingRecord) and latest.slot == START + 4 * STEP
    storage.record([kmp_reading("both", 5)])
    assert storage.latest("both") == kmp_reading("both", 5)
    found = storage.latest_readings(["both", "after", "zz", "nobody"])
    assert found == {
        "both": kmp_reading("both", 5),
        "after": reading("after", 0),
        "zz": kmp_reading("zz", 0),
    }
    assert storage.latest("nobody") is None


def test_status_and_attempts_count_kmp_readings(storage: Storage) -> None:
    storage.record([kmp_reading("flat", i) for i in range(3)], [failure("flat", 3)])
    storage.record([reading("both", 0), kmp_reading("both", 1)])
    status = {s.meter: s for s in storage.status()}
    assert status["flat"].successes == 3 and status["flat"].failures == 1
    assert status["flat"].last_success == kmp_reading("flat", 2).read_at
    assert status["both"].successes == 2
    assert status["both"].last_success == kmp_reading("both", 1).read_at
    attempts = list(storage.attempts("flat"))
    assert [(a.ok, a.attempts, a.kind) for a in attempts] == [
        (True, 2, None),
        (True, 3, None),
        (True, 2, None),
        (False, 3, "timeout"),
    ]


def test_the_bcc_algorithms_leave_kmp_meters_out(storage: Storage) -> None:
    storage.record([reading("house", 0), kmp_reading("flat", 0)])
    assert storage.last_bcc_algorithms(["house", "flat"]) == {"house": "sum7"}


def test_kmp_consumption_comes_from_the_energy_register_without_tariffs(
    storage: Storage,
) -> None:
    readings = [
        kmp_reading("flat", 0, energy="100.25"),
        kmp_reading("flat", 1, energy="101.00"),
        kmp_reading("flat", 2, leave_out=("energy",)),  # no energy: skipped
        kmp_reading("flat", 3, energy="103.5"),
        kmp_reading("flat", 4, energy="3.5"),  # the meter exchanged: no row
        kmp_reading("flat", 5, energy="4.75"),
    ]
    storage.record(readings)
    rows = list(storage.consumption("flat"))
    assert [(r.start, r.end, str(r.energy), r.tariff_1, r.tariff_2) for r in rows] == [
        (readings[0].read_at, readings[1].read_at, "0.75", None, None),
        (readings[1].read_at, readings[3].read_at, "2.50", None, None),
        (readings[4].read_at, readings[5].read_at, "1.25", None, None),
    ]


def test_consumption_of_a_meter_that_changed_protocol(storage: Storage) -> None:
    storage.record(
        [
            reading("both", 0, energy=9_999_990, tariff_1=9_999_000, tariff_2=990),
            reading("both", 1, energy=5, tariff_1=9_999_010, tariff_2=995),  # wrapped
            kmp_reading("both", 2, energy="17.5"),
        ]
    )
    rows = list(storage.consumption("both"))
    assert [(r.energy, r.tariff_1, r.tariff_2) for r in rows] == [
        (Decimal(15), Decimal(10), Decimal(5)),  # mode A to mode A: across the wrap
        (Decimal("12.5"), None, None),  # to a KMP reading: no tariffs
    ]


def test_kmp_readings_are_queued_in_the_outbox_in_order(storage: Storage) -> None:
    storage.record([reading("house", 0)], outbox=("mqtt", "influxdb"))
    storage.record([kmp_reading("flat", 0), kmp_reading("flat", 1)], outbox=("mqtt", "influxdb"))
    storage.record([kmp_reading("flat", 1)], outbox=("mqtt",))  # stored already: not queued
    storage.record([kmp_reading("quiet", 0)])  # no queue named
    for output in ("mqtt", "influxdb"):
        items = storage.outbox_pending(10, output=output)
        assert [record for _, record in items] == [
            reading("house", 0),
            kmp_reading("flat", 0),
            kmp_reading("flat", 1),
        ]
        ids = [i for i, _ in items]
        assert ids == sorted(ids)
    assert storage.outbox_backlog("mqtt") == (3, reading("house", 0).read_at)
    # claims per meter, as for mode A; done entries leave the queue
    held = storage.outbox_pending(10, holder="a", lease=timedelta(minutes=1), output="influxdb")
    assert {r.meter for _, r in held} == {"house", "flat"}
    assert storage.outbox_pending(10, holder="b", output="influxdb") == []
    storage.outbox_done([i for i, r in held if r.meter == "house"], holder="a", output="influxdb")
    assert storage.outbox_backlog("influxdb") == (2, kmp_reading("flat", 0).read_at)
    [(first, kmp)] = storage.outbox_pending(1, holder="b", output="influxdb")
    assert kmp == kmp_reading("flat", 0)
    storage.outbox_done([first], holder="b", output="influxdb")
    assert storage.outbox_backlog("influxdb") == (1, kmp_reading("flat", 1).read_at)
    assert len(storage.outbox_pending(10, output="mqtt")) == 3  # the other queue untouched


def test_what_auto_found_is_remembered_per_meter(storage: Storage) -> None:
    assert storage.known_protocols(["flat"]) == {}
    storage.remember_protocol("flat", "kmp", 9600)
    storage.remember_protocol("house", "iec", None)
    storage.remember_protocol("flat", "kmp", 1200)  # found again, at another speed
    assert storage.known_protocols(["flat", "house", "nobody"]) == {
        "flat": ("kmp", 1200),
        "house": ("iec", None),
    }
    assert storage.known_protocols(["house"]) == {"house": ("iec", None)}
    with pytest.raises(StorageError, match="unknown protocol"):
        storage.remember_protocol("flat", "modbus", 9600)
    with pytest.raises(StorageError, match="positive"):
        storage.remember_protocol("flat", "kmp", 0)
    assert storage.known_protocols(["flat"]) == {"flat": ("kmp", 1200)}
    storage.forget_protocols(["flat", "nobody"])  # to be detected again
    assert storage.known_protocols(["flat", "house"]) == {"house": ("iec", None)}
    storage.forget_protocols([])
    assert storage.known_protocols(["house"]) == {"house": ("iec", None)}


@pytest.mark.postgres
def test_a_kmp_reading_ends_its_lease_like_a_mode_a_reading(postgres_db_url: str) -> None:
    with open_storage(postgres_db_url) as a, open_storage(postgres_db_url) as b:
        short = timedelta(milliseconds=200)
        assert a.claim("a", ["flat", "house"], START, short) == ["flat", "house"]
        a.record([kmp_reading("flat", 0)])
        time.sleep(0.3)  # a's leases expired: only what it did not store is handed out again
        assert b.claim("b", ["flat", "house"], START, LONG) == ["house"]
        # stored without a claim: never handed out for its slot either
        a.record([kmp_reading("loft", 0)])
        assert b.claim("b", ["loft"], START, LONG) == []
        assert b.claim("b", ["loft"], START + STEP, LONG) == ["loft"]


def test_a_large_batch_of_kmp_readings_is_one_transaction(storage: Storage) -> None:
    batch = [kmp_reading(f"m{i % 97:02d}", i // 97) for i in range(1000)]  # 256-row statements
    assert storage.record(batch, outbox=("mqtt",)) == 1000
    assert storage.record(batch, outbox=("mqtt",)) == 0
    assert storage.outbox_backlog("mqtt")[0] == 1000
    assert sum(1 for _ in storage.readings()) == 1000
    assert [r for _, r in storage.outbox_pending(1000)] == batch  # queued in the order given
