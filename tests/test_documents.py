"""documents: the one JSON shape of a reading, checked against its JSON Schema wherever a
reading is given as JSON (read --json, export json/jsonl, MQTT state, the API: each output's
own tests validate too; here the whole path from the emulator to each output)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kamstrup382.cli import main
from kamstrup382.documents import (
    dumps,
    reading_document,
    reading_schema,
    record_document,
)
from kamstrup382.emulator import EmulatorThread
from kamstrup382.outputs.discovery import state_json
from kamstrup382.protocol import BccMode, decode_reply
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.reading import Reading
from kamstrup382.storage.url import open_storage
from tests.storage.samples import reading
from tests.test_render import T0, other_meter_reply


def valid(document: Any) -> None:
    jsonschema.validate(document, reading_schema())


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = reading_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schema_refuses_what_is_not_the_shape() -> None:
    good = json.loads(state_json(reading("house", 3)))
    valid(good)
    flat = {**good, "energy": 53}  # the old flat shape: a register beside the others
    missing = {k: v for k, v in good.items() if k != "registers"}
    as_text = copy.deepcopy(good)
    as_text["registers"]["energy"]["value"] = "53"  # a number register given as text
    short_customer = copy.deepcopy(good)
    short_customer["registers"]["customer_number"]["value"] = "54042"  # leading zeros lost
    no_unit = copy.deepcopy(good)
    del no_unit["registers"]["energy"]["unit"]
    zulu = {**good, "read_at": good["read_at"].replace("+00:00", "Z")}
    for bad in (flat, missing, as_text, short_customer, no_unit, zulu):
        with pytest.raises(jsonschema.ValidationError):
            valid(bad)


def test_another_meters_reading_keeps_its_unknown_codes() -> None:
    telegram = decode_reply(other_meter_reply(), bcc=BccMode.XOR)
    at = T0
    other = Reading(telegram, "socket://127.0.0.1:1", LineMode.SEVEN_E_ONE, at, at, at, 0.2, 5.0)
    document = json.loads(dumps(reading_document(other, meter="barn")))
    valid(document)
    assert document["meter"] == "barn"
    assert list(document["registers"]) == ["customer_number", "1.8.0*2", "C.1"]
    assert document["identification"]["type_number"] is None
    assert document["registers"]["1.8.0*2"]["values"] == [
        {"value": 1.5, "unit": "MWh"},
        {"value": 12, "unit": "h"},
    ]


def test_a_stored_reading_is_given_with_the_meters_digits() -> None:
    record = reading("house", 2, peak="18.3")
    document = record_document(record, raw=True)
    assert document["registers"]["actual_peak"]["value"] == Decimal("18.3")
    assert bytes.fromhex(document["raw"]) == record.raw
    text = dumps(document)
    assert '"value": 18.3' in text and '"value": 999999.9' in text
    valid(json.loads(text))
    assert json.loads(text, parse_float=Decimal)["registers"]["last_month_peak"]["value"] == (
        Decimal("999999.9")
    )


def test_from_the_emulator_to_read_collect_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # k382 read --json against the emulated meter
    with EmulatorThread(transport="tcp", speed=50.0) as emu:
        assert main(["read", emu.ports[0], "--json"]) == 0
        read = json.loads(capsys.readouterr().out)
        sent = emu.sent_values(0)[-1]
    valid(read)
    assert read["registers"]["energy"]["value"] == int(sent.energy)
    # the collector stores two meters' readings; export gives them in the same shape
    url = f"sqlite:///{tmp_path / 'k382.sqlite'}"
    args = ["collect", "--once", "--emulator", "2", "--speed", "100", "--storage", url]
    assert main(args) == 0
    capsys.readouterr()
    with open_storage(url) as storage:
        stored = list(storage.readings())
    assert len(stored) == 2
    assert main(["export", "--storage", url, "--format", "json", "--raw"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert main(["export", "--storage", url, "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(exported) == len(lines) == 2
    for document, line, record in zip(exported, lines, stored, strict=True):
        valid(document)
        valid(line)
        assert {k: v for k, v in document.items() if k != "raw"} == line
        assert bytes.fromhex(document["raw"]) == record.raw
        # the MQTT state message of the same reading is the same object
        assert json.loads(state_json(record)) == line
