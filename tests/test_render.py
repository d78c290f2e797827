"""render: JSON with exact numbers, the register table, CSV rows."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from kamstrup382.documents import reading_schema
from kamstrup382.errors import UsageError
from kamstrup382.protocol import BccAlgorithm, BccMode, compute_bcc, decode_reply
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.reading import Reading
from kamstrup382.render import (
    CSV_FIELDS,
    dumps,
    format_value,
    reading_csv_row,
    reading_json,
    registers_table,
    telegram_json,
)

SPEC = (Path(__file__).resolve().parent / "data" / "spec-example.bin").read_bytes()
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def other_meter_reply() -> bytes:
    body = b"0.0(00054042)\r\n1.8.0*2(0001,5*MWh)(12*h)\r\nC.1()\r\n!\r\n\x03"
    return b"/ABC5 other meter\r\n\x02" + body + bytes((compute_bcc(body, BccAlgorithm.XOR),))


def reading() -> Reading:
    return Reading(
        telegram=decode_reply(SPEC),
        port="socket://127.0.0.1:4001",
        line=LineMode.EIGHT_N_ONE,
        requested_at=T0,
        first_byte_at=T0 + timedelta(milliseconds=250),
        done_at=T0 + timedelta(seconds=5.8),
        answer_delay=0.25,
        duration=5.8,
        attempts=2,
    )


def test_telegram_json_shape() -> None:
    data = telegram_json(decode_reply(SPEC))
    assert data["identification"] == {
        "line": "KAM 685-382-OK-15",
        "manufacturer": "KAM",
        "baud_char": " ",
        "text": "685-382-OK-15",
        "type_number": {
            "text": "685-382-OK-15",
            "phases": 3,
            "current_code": 8,
            "accuracy_class": 2,
            "module": "OK",
            "label": "15",
        },
    }
    assert data["bcc"] == {"algorithm": "sum7", "value": "0x3e", "valid": True}
    # registers keyed by name, in the order sent, each with its code and unit
    assert data["registers"]["customer_number"] == {
        "code": "0.0",
        "value": "00054042",
        "unit": None,
    }
    assert data["registers"]["actual_peak"] == {
        "code": "1.6", "value": Decimal("18.3"), "unit": "kW"
    }  # fmt: skip
    # last month's peak prints no unit: the register's implied unit is given
    assert data["registers"]["last_month_peak"]["unit"] == "kW"
    assert [r["code"] for r in data["registers"].values()] == [
        "0.0", "1.20", "1.20.1", "1.20.2", "1.31", "1.26", "1.6", "1.6*1"
    ]  # fmt: skip
    assert list(data["registers"]) == [
        "customer_number", "energy", "tariff_1", "tariff_2",
        "hour_counter", "pulse_input", "actual_peak", "last_month_peak",
    ]  # fmt: skip


def test_dumps_writes_the_meters_digits_as_json_numbers() -> None:
    text = dumps(telegram_json(decode_reply(SPEC)))
    assert '"value": "00054042"' in text  # the customer number stays a string
    assert '"value": 53,' in text and '"value": 18.3,' in text and '"value": 0.0,' in text
    parsed = json.loads(text, parse_float=Decimal)
    assert parsed == json.loads(
        dumps(telegram_json(decode_reply(SPEC)), indent=2), parse_float=Decimal
    )
    assert [r["value"] for r in parsed["registers"].values()] == [
        "00054042", 53, 33, 20, 482, 0, Decimal("18.3"), Decimal("0.0")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("18.3"), "18.3"),
        (Decimal("0.0"), "0.0"),
        (Decimal("1E+3"), "1000"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("-0.5"), "-0.5"),
        ("00054042", "00054042"),
    ],
)
def test_format_value_is_fixed_notation(value: Decimal | str, text: str) -> None:
    assert format_value(value) == text


def test_dumps_other_types_and_refusals() -> None:
    obj = {"a": [1, 2.5, True, None, 'x"y'], "b": {}, "c": [], "d": (Decimal("7.10"),)}
    assert dumps(obj) == '{"a": [1, 2.5, true, null, "x\\"y"], "b": {}, "c": [], "d": [7.10]}'
    assert json.loads(dumps(obj, indent=4)) == json.loads(dumps(obj))
    for bad in ({1: 2}, Decimal("NaN"), float("inf"), b"raw", object()):
        with pytest.raises(UsageError):
            dumps(bad)


def test_other_meter_json_and_table() -> None:
    telegram = decode_reply(other_meter_reply(), bcc=BccMode.XOR)
    data = telegram_json(telegram)
    assert data["identification"]["type_number"] is None
    assert data["identification"]["baud_char"] == "5"
    assert data["bcc"]["algorithm"] == "xor"
    multi = data["registers"]["1.8.0*2"]  # an unknown code: keyed by its code
    assert multi["code"] == "1.8.0*2"
    assert multi["value"] == Decimal("1.5") and multi["unit"] == "MWh"
    assert multi["values"] == [
        {"value": Decimal("1.5"), "unit": "MWh"},
        {"value": Decimal(12), "unit": "h"},
    ]
    assert data["registers"]["C.1"] == {"code": "C.1", "value": "", "unit": None}
    table = registers_table(telegram)
    assert "1.8.0*2  -" in table and "0001,5" not in table and "1.5 12" in table


def test_registers_table_is_aligned() -> None:
    lines = registers_table(decode_reply(SPEC)).splitlines()
    assert lines[0].split() == ["code", "name", "value", "unit"]
    assert lines[7].split() == ["1.6", "actual_peak", "18.3", "kW"]
    assert lines[6].split() == ["1.26", "pulse_input", "0"]
    value_ends = set()
    for line in lines:
        _, name, value, *_ = line.split()
        after_name = line.index(name) + len(name)
        value_ends.add(line.index(value, after_name) + len(value))
    assert len(value_ends) == 1  # values right-aligned in one column


def test_reading_json_adds_where_how_when() -> None:
    data = reading_json(reading())
    assert data["port"] == "socket://127.0.0.1:4001"
    assert data["line"] == "8N1"
    assert data["meter"] is None  # no configured name
    assert data["read_at"] == "2026-01-02T03:04:05+00:00"
    assert data["timing"] == {
        "answer_delay_s": 0.25,
        "duration_s": 5.8,
        "attempts": 2,
        "requested_at": "2026-01-02T03:04:05+00:00",
        "first_byte_at": "2026-01-02T03:04:05.250000+00:00",
        "done_at": "2026-01-02T03:04:10.800000+00:00",
    }
    assert data["registers"] == telegram_json(decode_reply(SPEC))["registers"]
    jsonschema.validate(json.loads(dumps(data)), reading_schema())


def test_csv_row() -> None:
    assert CSV_FIELDS == (
        "read_at", "port", "customer_number", "energy", "tariff_1", "tariff_2", "tariff_3",
        "tariff_4", "hour_counter", "pulse_input", "actual_peak", "last_month_peak",
    )  # fmt: skip
    assert reading_csv_row(reading()) == [
        "2026-01-02T03:04:05+00:00", "socket://127.0.0.1:4001",
        "00054042", "53", "33", "20", "", "", "482", "0", "18.3", "0.0",
    ]  # fmt: skip


def test_times_are_written_in_utc_and_naive_times_refused() -> None:
    cet = timezone(timedelta(hours=1))
    shifted = replace(reading(), requested_at=T0.astimezone(cet))
    assert reading_csv_row(shifted)[0] == "2026-01-02T03:04:05+00:00"
    with pytest.raises(UsageError, match="naive"):
        reading_csv_row(replace(reading(), requested_at=T0.replace(tzinfo=None)))


def test_timings_are_shown_to_the_millisecond() -> None:
    noisy = dataclasses.replace(reading(), answer_delay=0.250999999999749, duration=5.8330000001)
    timing = reading_json(noisy)["timing"]
    assert (timing["answer_delay_s"], timing["duration_s"]) == (0.251, 5.833)
