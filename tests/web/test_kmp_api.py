"""KMP meters in the API beside a mode A meter: the meter list, a meter with each register as
last read, the latest reading and the readings in the one shape, the CSV columns of each
protocol, no mode A field made up (no tariff, no peak, no hour counter).

The rows and columns are checked alone; the API over a real SQLite storage holding both kinds,
stored through ``Storage.record`` as the collector stores them (schema version 10).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import jsonschema
import pytest

from kamstrup382.documents import reading_schema
from kamstrup382.storage.base import Storage
from kamstrup382.web import create_app
from kamstrup382.web.latest import COLUMNS, LOOKBACK, shown_columns
from kamstrup382.web.rows import (
    KMP_READING_COLUMNS,
    MIXED_READING_COLUMNS,
    PHASE_COLUMNS,
    READING_COLUMNS,
    csv_text,
    reading_columns,
    reading_row,
)
from tests.web.history import build_history
from tests.web.kmp_history import LEFT_OUT, KmpHistory, build_kmp_history

MODE_A_ONLY = ("tariff_1", "tariff_2", "hour_counter", "pulse_input", "actual_peak")


def as_decimal(value: object) -> Decimal:
    return Decimal(json.dumps(value))


# -- rows and columns, alone ---------------------------------------------------------------------


def test_a_kmp_readings_row_has_its_registers_and_no_mode_a_column() -> None:
    record = build_kmp_history(slots=2, fail_every=0).readings[-1]
    row = reading_row(record)
    assert row["protocol"] == "kmp" and row["meter_type"] == "0x0382" and row["serial"] == 4711
    for name, value in record.values.items():
        assert as_decimal(row[name]) == value, name
    assert row["voltage_l2"] is None and row["current_l2"] is None  # left out: null, not 0
    assert not set(row) & {"tariff_1", "identification", "bcc_algorithm", "answer_delay"}
    assert set(row) - {"protocol"} == set(KMP_READING_COLUMNS)


def test_the_csv_columns_follow_the_protocols() -> None:
    assert reading_columns(set()) == reading_columns({"iec"}) == READING_COLUMNS
    assert reading_columns({"kmp"}) == KMP_READING_COLUMNS
    assert reading_columns({"iec", "kmp"}) == MIXED_READING_COLUMNS
    assert set(MIXED_READING_COLUMNS) == {"protocol"} | set(READING_COLUMNS) | set(
        KMP_READING_COLUMNS
    )
    mode_a = build_history("house", slots=1, fail_every=0).readings[0]
    kmp = build_kmp_history("flat", slots=1, fail_every=0).readings[0]
    text = csv_text(MIXED_READING_COLUMNS, [reading_row(mode_a), reading_row(kmp)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["protocol"] for r in rows] == ["iec", "kmp"]
    assert rows[0]["voltage_l1"] == "" and rows[1]["tariff_1"] == ""  # none made up
    assert rows[0]["energy"] == str(mode_a.values.energy)
    assert rows[1]["energy"] == str(kmp.values["energy"])


def test_the_tables_columns_are_the_registers_the_meters_have() -> None:
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))  # energy is one column for both protocols
    energy = next(c for c in COLUMNS if c.name == "energy")
    assert energy.code == "1.20, KMP 0x0001" and energy.unit == "kWh"
    kmp = ("voltage_l1", "energy", "power")
    assert [c.name for c in shown_columns([(), kmp])] == ["energy", "power", "voltage_l1"]
    shown = [c.name for c in shown_columns([])]  # no reading yet: a 685-382's
    assert "tariff_1" in shown and "power" not in shown


# -- the API over a storage holding both kinds ---------------------------------------------------


@pytest.fixture
async def client(both: Storage) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(both))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_meter_list_shows_the_kmp_meter_as_it_is(
    client: httpx.AsyncClient, kmp: KmpHistory
) -> None:
    meters = {m["name"]: m for m in (await client.get("/api/meters")).json()["meters"]}
    assert meters["house"]["protocol"] == "iec" and meters["flat"]["protocol"] == "kmp"
    flat = meters["flat"]
    assert flat["identification"] is None and flat["type_number"] is None  # no mode A field
    latest = flat["latest"]
    jsonschema.validate(latest, reading_schema())
    assert latest["protocol"] == "kmp"
    assert latest["meter_identity"] == {
        "meter_type": "0x0382",
        "software_revision": "A1",
        "serial": 4711,
    }
    last = kmp.readings[-1]
    assert {n: as_decimal(r["value"]) for n, r in latest["registers"].items()} == dict(last.values)
    assert not set(latest["registers"]) & set(MODE_A_ONLY + LEFT_OUT)
    assert flat["status"]["successes"] == len(kmp.readings)
    assert flat["status"]["failures"] == len(kmp.failures)


async def test_a_kmp_meter_with_each_register_from_the_last_reading_where_it_was_read(
    client: httpx.AsyncClient, kmp: KmpHistory
) -> None:
    meter = (await client.get("/api/meters/flat")).json()
    last, before = kmp.readings[-1], kmp.readings[-2]
    assert before.read_at >= last.read_at - LOOKBACK
    current = meter["current"]
    for name in LEFT_OUT:  # not in the last answer: the one before, with its time
        assert as_decimal(current[name]["value"]) == before.values[name]
        assert current[name]["read_at"] == before.read_at.isoformat()
    for name, value in last.values.items():
        assert as_decimal(current[name]["value"]) == value
        assert current[name]["read_at"] == last.read_at.isoformat()
    assert current["voltage_l1"]["unit"] == "V" and current["current_l1"]["unit"] == "A"
    assert not set(current) & set(MODE_A_ONLY)
    # a mode A meter: its latest reading's registers, all of that reading
    house = (await client.get("/api/meters/house")).json()
    assert set(house["current"]) == set(house["latest"]["registers"])


async def test_latest_and_readings_in_the_one_shape(
    client: httpx.AsyncClient, kmp: KmpHistory
) -> None:
    latest = (await client.get("/api/meters/flat/latest")).json()
    jsonschema.validate(latest, reading_schema())
    assert latest["read_at"] == kmp.readings[-1].read_at.isoformat()
    answer = (await client.get("/api/meters/flat/readings", params={"limit": 1000})).json()
    assert [r["read_at"] for r in answer["rows"]] == [r.read_at.isoformat() for r in kmp.readings]
    for row in answer["rows"]:
        jsonschema.validate(row, reading_schema())
        assert row["protocol"] == "kmp" and "bcc" not in row


async def test_csv_of_a_kmp_meter_has_its_columns(
    client: httpx.AsyncClient, kmp: KmpHistory
) -> None:
    response = await client.get(
        "/api/meters/flat/readings", params={"format": "csv", "limit": 1000}
    )
    assert response.status_code == 200
    reader = csv.DictReader(io.StringIO(response.text))
    assert tuple(reader.fieldnames or ()) == KMP_READING_COLUMNS
    rows = list(reader)
    assert len(rows) == len(kmp.readings)
    for row, record in zip(rows, kmp.readings, strict=True):
        for name in KMP_READING_COLUMNS[6:-3]:
            value = record.values.get(name)
            if value is None:
                assert row[name] == "", name  # left out: empty, not 0
            else:
                assert Decimal(row[name]) == value, name  # the JSON number of the meter's value
    house = await client.get("/api/meters/house/readings", params={"format": "csv"})
    assert next(csv.reader(io.StringIO(house.text))) == list(READING_COLUMNS)


async def test_a_kmp_meters_consumption_has_energy_and_no_tariffs(
    client: httpx.AsyncClient, kmp: KmpHistory
) -> None:
    answer = (await client.get("/api/meters/flat/consumption", params={"bucket": "hour"})).json()
    rows = answer["rows"]
    assert rows and all(r["tariff_1"] is None and r["tariff_2"] is None for r in rows)
    first, last = kmp.readings[0], kmp.readings[-1]
    total = sum(as_decimal(r["energy"]) for r in rows)
    assert total == last.values["energy"] - first.values["energy"]  # every kWh, in buckets
    text = (await client.get("/api/meters/flat/consumption", params={"format": "csv"})).text
    assert {r["tariff_1"] for r in csv.DictReader(io.StringIO(text))} == {""}


async def test_a_kmp_meter_has_no_peaks(client: httpx.AsyncClient) -> None:
    peaks = (await client.get("/api/meters/flat/peaks")).json()
    assert peaks["rows"] == []
    assert (await client.get("/api/meters/house/peaks")).json()["rows"]


async def test_the_phases_of_a_kmp_meter_at_each_reading(
    client: httpx.AsyncClient, kmp: KmpHistory
) -> None:
    answer = (await client.get("/api/meters/flat/phases")).json()
    assert answer["truncated"] is False
    rows = answer["rows"]
    assert [r["read_at"] for r in rows] == [r.read_at.isoformat() for r in kmp.readings]
    for row, record in zip(rows, kmp.readings, strict=True):
        assert tuple(row) == PHASE_COLUMNS
        for name in PHASE_COLUMNS[1:]:
            value = record.values.get(name)
            assert (row[name] is None) if value is None else as_decimal(row[name]) == value
    assert rows[-1]["voltage_l2"] is None  # left out of the last answer: null, not 0
    text = (await client.get("/api/meters/flat/phases", params={"format": "csv"})).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert [json.loads(r["power"]) for r in table] == [r["power"] for r in rows]
    assert table[-1]["voltage_l2"] == ""
    # a mode A meter has none of these registers
    assert (await client.get("/api/meters/house/phases")).json()["rows"] == []


async def test_the_dashboard_pages_show_the_kmp_meter(client: httpx.AsyncClient) -> None:
    index = (await client.get("/")).text
    assert 'data-meter="flat"' in index and ">KMP 0x0382<" in index
    assert 'data-field="voltage_l1"' in index and 'data-field="tariff_1"' in index
    page = (await client.get("/meters/flat")).text
    assert 'id="phases"' in page and 'id="plot-tariffs"' not in page
    assert 'id="plot-peaks"' not in page and 'id="plot-energy"' in page
    assert 'id="plot-phases-power"' in page and 'id="plot-phases-voltage"' in page
    assert 'id="phases"' not in (await client.get("/meters/house")).text
