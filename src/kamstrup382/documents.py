"""The one JSON shape of a reading, and JSON text with exact numbers.

Every output that gives a reading as JSON gives this object: ``k382 read --json``, ``k382
export --format json|jsonl``, the MQTT state topic and the dashboard's API. Its JSON Schema is
``kamstrup382/data/reading.schema.json`` (:func:`reading_schema`); ``docs/formats.md`` describes
it field by field::

    {"meter": "house",                       # null from `k382 read` (no configured name)
     "read_at": "2026-12-03T14:00:00.041000+00:00",  # when the request was sent, UTC
     "slot": "2026-12-03T14:00:00+00:00",        # the collector's interval (stored readings only)
     "identification": {"line": "KAM 685-382-OK-15", "manufacturer": "KAM", ...},
     "dialect": "kamstrup-382",               # the register table it names (or kamstrup-382c)
     "registers": {"energy": {"code": "1.20", "value": 53, "unit": "kWh"}, ...},
     "bcc": {"algorithm": "sum7"},
     "timing": {"answer_delay_s": 0.041, "duration_s": 5.77, "attempts": 1}}

Registers are keyed by name (an unknown code by its code), in the order the meter sends them;
a value is a JSON number with the meter's digits (:func:`dumps` writes a ``Decimal`` exactly),
text where the register is text (the customer number keeps its leading zeros). A register the
meter did not send is absent, never 0. Outputs add their own fields beside these (``port``,
``line`` and the BCC's details from ``k382 read``; ``raw`` from ``k382 export --raw``); the
schema names each of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.protocol import (
    KAMSTRUP_382,
    REGISTER_BY_NAME,
    DataSet,
    Dialect,
    Identification,
    Telegram,
    dialect_of,
    parse_identification,
)
from kamstrup382.protocol.kmp import KMP_REGISTER_BY_NAME
from kamstrup382.protocol.registers import RegisterKind
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.reader.reading import Reading
from kamstrup382.storage.records import AnyReading, KmpReadingRecord, ReadingRecord

__all__ = [
    "any_record_document",
    "dumps",
    "format_value",
    "identification_document",
    "kmp_reading_document",
    "kmp_record_document",
    "reading_document",
    "reading_schema",
    "record_document",
    "registers_document",
    "utc",
]


def format_value(value: Decimal | str) -> str:
    """A register value as text with the meter's digits, in fixed notation (no exponent)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UsageError(f"value {value} is not a finite number")
        return format(value, "f")
    return value


def utc(moment: datetime) -> str:
    """ISO 8601 in UTC (``+00:00``, as every time of the API and CSV), to the microsecond."""
    if moment.tzinfo is None:
        raise UsageError(f"naive datetime {moment.isoformat()}: expected timezone-aware UTC")
    return moment.astimezone(UTC).isoformat()


# -- the parts ----------------------------------------------------------------------------------


def identification_document(identification: Identification) -> dict[str, Any]:
    """The identification line (without ``/``) and its parts, the type number decoded."""
    tn = identification.type_number
    return {
        "line": str(identification).removeprefix("/"),
        "manufacturer": identification.manufacturer,
        "baud_char": identification.baud_char,
        "text": identification.text,
        "type_number": None
        if tn is None
        else {
            "text": str(tn),
            "phases": tn.phases,
            "current_code": tn.current_code,
            "accuracy_class": tn.accuracy_class,
            "module": tn.module,
            "label": tn.label,
        },
    }


def _stored_identification(text: str) -> tuple[dict[str, Any], Dialect]:
    """The identification of a stored reading (its line without ``/``), parsed again once,
    and the dialect it names (the 685-382's when it does not parse)."""
    try:
        identification = parse_identification(b"/" + text.encode("ascii"))
    except (Kamstrup382Error, UnicodeEncodeError):  # stored by another program: keep the text
        unparsed = {
            "line": text,
            "manufacturer": None,
            "baud_char": None,
            "text": text,
            "type_number": None,
        }
        return unparsed, KAMSTRUP_382
    return identification_document(identification), dialect_of(identification)


def _data_set_entry(ds: DataSet) -> tuple[str, dict[str, Any]]:
    register = ds.register  # named by the meter's dialect, or None
    entry: dict[str, Any] = {
        "code": ds.address,
        "value": ds.value,
        # the register's unit, printed or implied (last month's peak prints none: kW)
        "unit": ds.unit if register is None else register.unit,
    }
    if len(ds.values) > 1:  # address(v1*u1)(v2*u2): every group, as printed
        entry["values"] = [
            {"value": v.text if v.number is None else v.number, "unit": v.unit} for v in ds.values
        ]
    return (ds.name or ds.address), entry


def registers_document(telegram: Telegram) -> dict[str, dict[str, Any]]:
    """Every data set of a telegram, keyed by register name (an unknown code by its code)."""
    return dict(_data_set_entry(ds) for ds in telegram.data_sets)


def _stored_registers(
    values: Mapping[str, Decimal | str | None], dialect: Dialect
) -> dict[str, dict[str, Any]]:
    registers: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if value is None:  # not sent by this meter: absent, never 0
            continue
        register = dialect.register(name) if name in dialect.names else REGISTER_BY_NAME[name]
        shown = str(value) if register.kind is RegisterKind.TEXT else value
        registers[name] = {"code": register.code, "value": shown, "unit": register.unit}
    return registers


def _timing(answer_delay: float, duration: float, attempts: int) -> dict[str, Any]:
    return {
        "answer_delay_s": round(answer_delay, 3),  # to the millisecond
        "duration_s": round(duration, 3),
        "attempts": attempts,
    }


# -- the whole reading --------------------------------------------------------------------------


def record_document(record: ReadingRecord, *, raw: bool = False) -> dict[str, Any]:
    """A stored reading (export, MQTT, the API); ``raw``: add the reply's bytes as hex."""
    identification, dialect = _stored_identification(record.identification)
    document: dict[str, Any] = {
        "meter": record.meter,
        "read_at": utc(record.read_at),
        "slot": utc(record.slot),
        "identification": identification,
        "dialect": dialect.name,
        "registers": _stored_registers(record.values.as_dict(), dialect),
        "bcc": {"algorithm": str(record.bcc_algorithm)},
        "timing": _timing(record.answer_delay, record.duration, record.attempts),
    }
    if raw:
        document["raw"] = record.raw.hex()
    return document


def kmp_record_document(record: KmpReadingRecord) -> dict[str, Any]:
    """A stored KMP reading (export, MQTT, the API): ``protocol`` ``kmp``, the registers by
    name in their table's order with their id as ``code`` and their table's unit (the value
    was converted to it when stored), and what the meter said it is (``meter_identity``)."""
    registers: dict[str, dict[str, Any]] = {}
    for name, register in KMP_REGISTER_BY_NAME.items():
        value = record.values.get(name)
        if value is not None:
            registers[name] = {
                "code": f"0x{register.id:04x}",
                "value": value,
                "unit": register.unit,
            }
    return {
        "meter": record.meter,
        "read_at": utc(record.read_at),
        "slot": utc(record.slot),
        "protocol": "kmp",
        "registers": registers,
        "timing": {
            "duration_s": round(record.duration, 3),
            "attempts": record.attempts,
            "exchanges": record.exchanges,
        },
        "meter_identity": _meter_identity(
            record.meter_type, record.software_revision, record.serial
        ),
    }


def any_record_document(record: AnyReading, *, raw: bool = False) -> dict[str, Any]:
    """A stored reading of either protocol in the one shape (``raw``: mode A only, the reply's
    bytes; KMP readings keep no raw reply)."""
    if isinstance(record, KmpReadingRecord):
        return kmp_record_document(record)
    return record_document(record, raw=raw)


def reading_document(reading: Reading, *, meter: str | None = None) -> dict[str, Any]:
    """A reader's reading (``k382 read``): every data set the meter sent, where it was read."""
    return {
        "meter": meter,
        "read_at": utc(reading.requested_at),
        "identification": identification_document(reading.identification),
        "dialect": reading.telegram.dialect.name,
        "registers": registers_document(reading.telegram),
        "bcc": {"algorithm": reading.bcc_algorithm.value},
        "timing": _timing(reading.answer_delay, reading.duration, reading.attempts),
        "port": reading.port,
        "line": reading.line.value,
    }


def kmp_reading_document(reading: KmpReading, *, meter: str | None = None) -> dict[str, Any]:
    """A KMP reading (``k382 read --protocol kmp``) in the same shape: ``protocol`` ``kmp``,
    the registers keyed by name (an id outside the 382's table by ``0xNNNN``) with their id as
    ``code``, no identification line and no BCC (KMP has a CRC per frame instead), and the
    line it was read on (``baud``, ``stop_bits``) and the ids the meter left out."""
    registers: dict[str, dict[str, Any]] = {}
    for register in reading.registers:
        code = f"0x{register.id:04x}"
        registers[register.name or code] = {
            "code": code,
            "value": register.value,
            "unit": register.unit,
        }
    document: dict[str, Any] = {
        "meter": meter,
        "read_at": utc(reading.requested_at),
        "protocol": "kmp",
        "registers": registers,
        "timing": {
            "duration_s": round(reading.duration, 3),
            "attempts": reading.attempts,
            "exchanges": reading.exchanges,
        },
        "port": reading.port,
        "baud": reading.baud,
        "stop_bits": reading.stop_bits,
        "missing": [f"0x{register:04x}" for register in reading.missing],
    }
    if reading.meter_type is not None and reading.serial is not None:
        document["meter_identity"] = _meter_identity(
            reading.meter_type, reading.software_revision or "", reading.serial
        )
    return document


def _meter_identity(meter_type: int, software_revision: str, serial: int) -> dict[str, Any]:
    return {
        "meter_type": f"0x{meter_type:04x}",
        "software_revision": software_revision,
        "serial": serial,
    }


@cache
def reading_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :func:`record_document` and
    :func:`reading_document`, as shipped in the package."""
    text = resources.files("kamstrup382").joinpath("data/reading.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


# -- JSON text ----------------------------------------------------------------------------------


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """JSON text; a :class:`Decimal` becomes a JSON number with exactly its digits.

    Accepts what :func:`json.dumps` accepts (dicts with string keys, lists, tuples, strings,
    ints, floats, booleans, ``None``) plus ``Decimal``. ``indent=None`` gives one line.
    """
    parts: list[str] = []
    _encode(obj, parts, indent, 0)
    return "".join(parts)


def _encode(obj: Any, out: list[str], indent: int | None, level: int) -> None:
    if isinstance(obj, Decimal):
        out.append(format_value(obj))
    elif obj is None or isinstance(obj, str | bool | int | float):
        try:
            out.append(json.dumps(obj, allow_nan=False))
        except ValueError as exc:  # a float NaN or infinity
            raise UsageError(f"cannot write {obj!r} as JSON") from exc
    elif isinstance(obj, Mapping):
        _encode_items(list(obj.items()), "{}", out, indent, level)
    elif isinstance(obj, Sequence) and not isinstance(obj, bytes | bytearray):
        _encode_items(list(obj), "[]", out, indent, level)
    else:
        raise UsageError(f"cannot write {type(obj).__name__} as JSON")


def _encode_items(
    items: Iterable[Any], brackets: str, out: list[str], indent: int | None, level: int
) -> None:
    out.append(brackets[0])
    count = 0
    for item in items:
        out.append(_separator(count, indent, level + 1))
        if brackets == "{}":
            key, value = item
            if not isinstance(key, str):
                raise UsageError(f"JSON object keys must be strings, got {key!r}")
            out.append(json.dumps(key))
            out.append(": ")
            _encode(value, out, indent, level + 1)
        else:
            _encode(item, out, indent, level + 1)
        count += 1
    if count:
        out.append(_closing(indent, level))
    out.append(brackets[1])


def _separator(index: int, indent: int | None, level: int) -> str:
    if indent is None:
        return ", " if index else ""
    return ("," if index else "") + "\n" + " " * (indent * level)


def _closing(indent: int | None, level: int) -> str:
    return "" if indent is None else "\n" + " " * (indent * level)
