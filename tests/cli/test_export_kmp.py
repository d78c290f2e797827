"""``k382 export`` of KMP readings beside mode A ones, out of both backends: the one JSON shape
(``"protocol": "kmp"``, the meter's digits), one CSV table for both protocols, consumption
from the KMP energy register with its tariffs empty."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from kamstrup382.cli import main
from kamstrup382.cli.export import READING_FIELDS
from kamstrup382.documents import reading_schema
from kamstrup382.storage.url import open_storage
from tests.storage.samples import kmp_reading, reading


@pytest.fixture(params=["sqlite", "postgres"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'k382.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_db_url")
    with open_storage(url) as storage:
        storage.record(
            [reading("house", 0), reading("both", 0), kmp_reading("both", 1)]
            + [kmp_reading("flat", i, energy=f"{100 + i}.5{i}") for i in range(3)]
        )
    return url


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["export", *args])
    return code, capsys.readouterr().out


def test_json_lines_carry_kmp_readings_in_the_one_shape(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "--storage", filled, "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line, parse_float=Decimal) for line in out.splitlines()]
    assert [(r["meter"], r.get("protocol", "iec")) for r in rows] == [
        ("both", "iec"),
        ("both", "kmp"),
        ("flat", "kmp"),
        ("flat", "kmp"),
        ("flat", "kmp"),
        ("house", "iec"),
    ]
    for line in out.splitlines():
        jsonschema.validate(json.loads(line), reading_schema())
    flat = rows[2]
    assert flat["registers"]["energy"] == {
        "code": "0x0001",
        "value": Decimal("100.50"),
        "unit": "kWh",
    }
    assert str(flat["registers"]["voltage_l2"]["value"]) == "229.0"  # the meter's digits
    assert "energy_out_hires" not in flat["registers"]  # not sent: not 0
    assert flat["meter_identity"] == {
        "meter_type": "0x0382",
        "software_revision": "A1",
        "serial": 5_098_765_432,
    }
    code, out = _run(capsys, "--storage", filled, "--format", "json", "--meter", "flat")
    assert [r["slot"] for r in json.loads(out)] == [r["slot"] for r in rows[2:5]]


def test_one_csv_table_holds_both_protocols(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "--storage", filled, "--meter", "both", "--raw")
    assert code == 0
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == [*READING_FIELDS, "raw"]
    assert READING_FIELDS[: READING_FIELDS.index("attempts") + 1] == (  # mode A's columns first
        "meter", "slot", "read_at", "customer_number", "energy", "tariff_1", "tariff_2",
        "tariff_3", "tariff_4", "hour_counter", "pulse_input", "actual_peak", "last_month_peak",
        "identification", "type_number", "bcc_algorithm", "answer_delay", "duration", "attempts",
    )  # fmt: skip
    mode_a, kmp = (dict(zip(table[0], row, strict=True)) for row in table[1:])
    assert (mode_a["protocol"], mode_a["customer_number"], mode_a["energy"]) == (
        "iec", "00012345", "1500",
    )  # fmt: skip
    assert mode_a["voltage_l1"] == mode_a["serial"] == ""
    assert bytes.fromhex(mode_a["raw"]) == reading("both", 0).raw
    expected = kmp_reading("both", 1)
    assert kmp["protocol"] == "kmp"
    assert kmp["energy"] == "12346.01"  # the shared column, kWh in both protocols
    assert kmp["voltage_l2"] == "229.0"
    assert kmp["power_l3"] == "-2771.9"
    assert kmp["energy_out_hires"] == ""  # not sent
    assert kmp["customer_number"] == kmp["identification"] == kmp["raw"] == ""
    assert (kmp["meter_type"], kmp["software_revision"], kmp["serial"]) == (
        "0x0382", "A1", str(expected.serial),
    )  # fmt: skip
    assert (kmp["duration"], kmp["attempts"], kmp["exchanges"]) == ("0.376", "3", "2")


def test_an_empty_csv_has_the_kmp_columns_too(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "--storage", filled, "--meter", "nobody")
    assert (code, out.splitlines()) == (0, [",".join(READING_FIELDS)])
    assert "voltage_l1" in READING_FIELDS and "protocol" in READING_FIELDS


def test_kmp_consumption_has_no_tariffs(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(
        capsys, "--storage", filled, "--what", "consumption", "--format", "jsonl", "--meter", "flat"
    )
    assert code == 0
    rows = [json.loads(line, parse_float=Decimal) for line in out.splitlines()]
    assert [(str(r["energy"]), r["tariff_1"], r["tariff_2"]) for r in rows] == [
        ("1.01", None, None),
        ("1.01", None, None),
    ]
    code, out = _run(capsys, "--storage", filled, "--what", "consumption", "--meter", "flat")
    assert out.splitlines() == [
        "meter,start,end,energy,tariff_1,tariff_2",
        "flat,2026-03-01T00:00:02+00:00,2026-03-01T00:15:02.000001+00:00,1.01,,",
        "flat,2026-03-01T00:15:02.000001+00:00,2026-03-01T00:30:02.000002+00:00,1.01,,",
    ]
