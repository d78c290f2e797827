"""KMP readings in InfluxDB: a point of the same measurement with the registers the meter sent,
exact, at the reading's own time; both kinds in one write to a real InfluxDB 1.x, each field of
one type; and through the output's queue (the storage keeps KMP readings from schema 10 on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

import pytest

from kamstrup382.errors import ConfigError
from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.outputs.influxdb_line import encode_lines, encode_point
from kamstrup382.outputs.influxdb_series import KMP_FIELDS, kmp_point, reading_point
from kamstrup382.outputs.influxdb_settings import InfluxSettings
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.storage import AnyReading, KmpReadingRecord, Storage
from tests.fixtures.influxdb import InfluxServer

from .helpers import PATIENCE, START, STEP, reading

QUERY = "SELECT * FROM kamstrup382 GROUP BY *"

#: What a 382Jx3 sends for the whole 382 register set (the emulator's resolutions: whole kWh
#: and 0.01 kWh, whole W and V, 0.01 A).
FULL: Mapping[str, Decimal] = {
    "energy": Decimal(1234),
    "energy_out": Decimal(0),
    "energy_hires": Decimal("1234.56"),
    "energy_out_hires": Decimal("0.00"),
    "power": Decimal(1830),
    "power_out": Decimal(0),
    "max_power": Decimal(4210),
    "voltage_l1": Decimal(229),
    "voltage_l2": Decimal(230),
    "voltage_l3": Decimal(230),
    "current_l1": Decimal("3.99"),
    "current_l2": Decimal("2.39"),
    "current_l3": Decimal("1.59"),
    "power_l1": Decimal(915),
    "power_l2": Decimal(549),
    "power_l3": Decimal(366),
}


def kmp_reading(
    meter: str = "flat", index: int = 0, values: Mapping[str, Decimal] = FULL
) -> KmpReadingRecord:
    """The ``index``-th quarter-hour KMP reading of ``meter`` (energy advancing 1 kWh a slot)."""
    slot = START + index * STEP
    advanced = dict(values)
    for name in ("energy", "energy_hires"):
        if name in advanced:
            advanced[name] += index
    return KmpReadingRecord(
        meter=meter,
        slot=slot,
        read_at=slot + timedelta(seconds=1, microseconds=250_000 + index),
        meter_type=0x0382,
        software_revision="A1",
        serial=54042,
        values=advanced,
        duration=0.213,
        exchanges=2,
        attempts=2,
    )


def nanoseconds(record: AnyReading) -> int:
    return int(record.read_at.timestamp()) * 10**9 + record.read_at.microsecond * 1000


def test_a_kmp_readings_point() -> None:
    record = kmp_reading("flat", 2)
    point = reading_point(record, measurement="energy", precision="ns", tags={"site": "home"})
    assert point == kmp_point(record, measurement="energy", precision="ns", tags={"site": "home"})
    assert point.measurement == "energy"
    assert dict(point.tags) == {
        "site": "home",
        "meter": "flat",
        "meter_type": "0x0382",
        "serial": "54042",
    }
    assert point.time == nanoseconds(record)
    assert dict(point.fields) == {
        "energy_kwh": 1236,
        "energy_out_kwh": 0,
        "energy_hires_kwh": 1236.56,
        "energy_out_hires_kwh": 0.0,
        "power_w": 1830.0,
        "power_out_w": 0.0,
        "max_power_w": 4210.0,
        "voltage_l1_v": 229.0,
        "voltage_l2_v": 230.0,
        "voltage_l3_v": 230.0,
        "current_l1_a": 3.99,
        "current_l2_a": 2.39,
        "current_l3_a": 1.59,
        "power_l1_w": 915.0,
        "power_l2_w": 549.0,
        "power_l3_w": 366.0,
        "duration_s": 0.213,
        "attempts": 2,
        "exchanges": 2,
    }
    # one type per key, whatever the value: the whole-kWh registers integers, the rest floats
    integers = {f.key for f in KMP_FIELDS if f.integer}
    assert integers == {"energy_kwh", "energy_out_kwh"}
    for f in KMP_FIELDS:
        assert type(point.fields[f.key]) is (int if f.integer else float), f.key
    assert [f.register for f in KMP_FIELDS] == [r.name for r in KMP_382_REGISTERS]
    # no answer delay (KMP has one per exchange), no mode A register
    assert "answer_delay_s" not in point.fields and "tariff_1_kwh" not in point.fields
    assert encode_point(point) == encode_point(
        kmp_point(record, measurement="energy", precision="ns", tags={"site": "home"})
    )


def test_a_register_the_meter_did_not_send_is_no_field() -> None:
    record = kmp_reading("flat", 0, {"energy": Decimal(7), "voltage_l2": Decimal("231.5")})
    point = kmp_point(record, measurement="kamstrup382", precision="s")
    assert dict(point.fields) == {
        "energy_kwh": 7,
        "voltage_l2_v": 231.5,
        "duration_s": 0.213,
        "attempts": 2,
        "exchanges": 2,
    }
    assert encode_point(point).startswith(
        "kamstrup382,meter=flat,meter_type=0x0382,serial=54042 energy_kwh=7i,voltage_l2_v=231.5,"
    )


def test_values_keep_the_meters_digits_or_are_refused() -> None:
    # every digit the meter sent, through the float's shortest text
    exact = kmp_reading("flat", 0, {"energy_hires": Decimal("98765432.01")})
    line = encode_point(kmp_point(exact, measurement="m", precision="s"))
    assert "energy_hires_kwh=98765432.01," in line
    tiny = kmp_reading("flat", 0, {"current_l1": Decimal("0.000001")})
    assert kmp_point(tiny, measurement="m", precision="s").fields["current_l1_a"] == 1e-6
    # more digits than a float64 keeps: refused, never rounded
    with pytest.raises(ValueError, match=r"energy_hires_kwh: 1234567890123.45678"):
        kmp_point(
            kmp_reading("flat", 0, {"energy_hires": Decimal("1234567890123.45678")}),
            measurement="m",
            precision="s",
        )
    # a fraction in the whole-kWh field (shared with mode A, an integer): refused, not cut
    with pytest.raises(ValueError, match=r"energy_kwh: 12.5 is not a whole number"):
        kmp_point(
            kmp_reading("flat", 0, {"energy": Decimal("12.5")}), measurement="m", precision="s"
        )


def test_the_kmp_tags_are_the_outputs_own() -> None:
    for key in ("serial", "meter_type"):
        with pytest.raises(ConfigError, match=rf"influxdb.tags.{key}"):
            InfluxSettings.parse({"url": "http://localhost", "database": "d", "tags": {key: "x"}})


def test_both_kinds_in_one_write_to_a_real_influxdb(influxdb: InfluxServer) -> None:
    """One body with mode A and KMP points: InfluxDB takes it whole (no field of two types),
    and every value comes back with the meter's digits at the reading's time."""
    records: list[AnyReading] = []
    for i in range(3):
        records += [reading("house", i), kmp_reading("flat", i)]
    records.append(kmp_reading("lx7", 0, {"energy": Decimal(88), "power": Decimal("412.5")}))
    points = [reading_point(r, measurement="kamstrup382", precision="ns") for r in records]
    status, body = influxdb._request("POST", "/write?db=k382&precision=ns", encode_lines(points))
    assert status == 204, body
    rows = {(row["meter"], row["time"]): row for row in influxdb.rows(QUERY, "k382")}
    assert len(rows) == len(records)
    for record in records:
        row = rows[(record.meter, nanoseconds(record))]
        if isinstance(record, KmpReadingRecord):
            _check_kmp_row(row, record)
        else:
            assert row["energy_kwh"] == int(record.values.energy)
            assert row["customer_number"] == record.values.customer_number
            assert row["voltage_l1_v"] is None  # a KMP field is no mode A meter's
    types = {v[0]: v[1] for s in influxdb.query("SHOW FIELD KEYS", "k382") for v in s["values"]}
    assert types["energy_kwh"] == types["attempts"] == types["exchanges"] == "integer"
    assert types["voltage_l1_v"] == types["energy_hires_kwh"] == types["power_w"] == "float"


def _check_kmp_row(row: Mapping[str, object], record: KmpReadingRecord) -> None:
    assert row["serial"] == str(record.serial) and row["meter_type"] == "0x0382"
    for f in KMP_FIELDS:
        value = record.values.get(f.register)
        if value is None:
            assert row[f.key] is None, f.key  # not sent: no field
        else:
            assert Decimal(repr(row[f.key])) == value, f.key  # the meter's digits
    assert row["duration_s"] == record.duration
    assert row["exchanges"] == record.exchanges and row["attempts"] == record.attempts
    assert not row["customer_number"] and row["answer_delay_s"] is None  # no mode A tag, field


async def test_the_output_writes_both_kinds_from_one_batch_of_its_queue(
    influxdb: InfluxServer, storage: Storage
) -> None:
    """Through the output: the collector's batch of mode A and KMP readings, stored and queued
    in one transaction, written in one request. (Needs the storage of KMP readings, schema
    version 10.)"""
    output = InfluxOutput.from_config(
        {"url": influxdb.url, "database": "k382", "client_id": "k382-test", "timeout": 5}
    )
    records: list[AnyReading] = []
    for i in range(4):
        records += [reading("house", i), kmp_reading("flat", i)]
    await output.start(storage)
    try:
        await asyncio.to_thread(storage.record, records, outbox=[output.name])
        await output.publish(records, [])

        async def drained() -> None:
            while (await asyncio.to_thread(storage.outbox_backlog, output.name))[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await asyncio.wait_for(drained(), PATIENCE)
    finally:
        await output.stop()
    assert output.health().counters == {
        "written": 8,
        "rejected": 0,
        "requests": 1,
        "failures": 0,
        "login_refusals": 0,
    }
    rows = {(row["meter"], row["time"]): row for row in influxdb.rows(QUERY, "k382")}
    assert len(rows) == 8
    for record in records:
        row = rows[(record.meter, nanoseconds(record))]
        if isinstance(record, KmpReadingRecord):
            _check_kmp_row(row, record)
        else:
            assert row["energy_kwh"] == int(record.values.energy)
