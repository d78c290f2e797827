"""Telegrams and readings as JSON, text tables and CSV rows: pure functions, no I/O.

Used by ``k382 decode`` and ``k382 read``. Register values are exact (:class:`~decimal.Decimal`)
all the way: :func:`dumps` writes them as JSON numbers with the digits the meter sent
(``000018,3`` -> ``18.3``, ``0000053`` -> ``53``, ``000000,0`` -> ``0.0``), never through a float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kamstrup382.errors import UsageError
from kamstrup382.protocol import REGISTERS, BccAlgorithm, DataSet, Identification, Telegram
from kamstrup382.reader.bcc_memory import BccCertainty
from kamstrup382.reader.reading import Reading

__all__ = [
    "CSV_FIELDS",
    "bcc_note",
    "dumps",
    "format_value",
    "identification_json",
    "reading_csv_row",
    "reading_json",
    "registers_table",
    "telegram_json",
]

#: Columns of :func:`reading_csv_row`: when the request was sent, the port, every register of
#: every dialect (a register the meter does not have: an empty cell).
CSV_FIELDS: tuple[str, ...] = ("read_at", "port", *(reg.name for reg in REGISTERS))


def format_value(value: Decimal | str) -> str:
    """A register value as text with the meter's digits, in fixed notation (no exponent)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UsageError(f"value {value} is not a finite number")
        return format(value, "f")
    return value


def identification_json(identification: Identification) -> dict[str, Any]:
    tn = identification.type_number
    return {
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


def _data_set_json(ds: DataSet) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "code": ds.address,
        "name": ds.name,
        "value": ds.value,
        "unit": ds.unit,
    }
    if len(ds.values) > 1:  # address(v1*u1)(v2*u2): every group, as printed
        entry["values"] = [
            {"value": v.text if v.number is None else v.number, "unit": v.unit} for v in ds.values
        ]
    return entry


def telegram_json(telegram: Telegram) -> dict[str, Any]:
    """The identification, the dialect it names, every data set in the order sent (named in
    that dialect), and the BCC that matched."""
    return {
        "identification": identification_json(telegram.identification),
        "dialect": telegram.dialect.name,
        "registers": [_data_set_json(ds) for ds in telegram.data_sets],
        "bcc": {
            "algorithm": telegram.bcc_algorithm.value,
            "value": f"0x{telegram.bcc:02x}",
            "valid": True,  # a Telegram exists only once its BCC matched
        },
    }


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise UsageError(f"naive datetime {moment.isoformat()}: expected timezone-aware UTC")
    return moment.astimezone(UTC).isoformat()


_OTHER = {BccAlgorithm.SUM7: BccAlgorithm.XOR, BccAlgorithm.XOR: BccAlgorithm.SUM7}
_NAMES = {BccAlgorithm.SUM7: "the 7-bit sum", BccAlgorithm.XOR: "the XOR"}


def bcc_note(reading: Reading) -> str | None:
    """Which algorithm matched and how sure that is, in words (``None``: not known)."""
    certainty = reading.bcc_certainty
    check = reading.telegram.bcc_check
    if certainty is None or check is None:
        return None
    used = reading.bcc_algorithm
    if certainty is BccCertainty.FIXED:
        return f"{used.value} fixed by the caller: the other algorithm was not computed"
    if certainty is BccCertainty.UNDECIDED:
        return (
            f"the 7-bit sum and the XOR are both 0x{check.received:02x} over this block: "
            "undecided, a later readout will tell"
        )
    other = _OTHER[used]
    only = f"only {_NAMES[used]} matched ({other.value} would be 0x{check.expected(other):02x})"
    if certainty is BccCertainty.CONFIRMED:
        return f"{only}: confirmed, earlier readouts of this meter agree"
    if certainty is BccCertainty.OWN:
        return f"{only}: the Kamstrup 382's own algorithm"
    return (
        f"{only}: a standard IEC 62056-21 meter, or a damaged telegram that matches by chance "
        "(1 in 128): unconfirmed until a second readout agrees (--watch)"
    )


def _bcc_json(reading: Reading) -> dict[str, Any]:
    """The ``bcc`` object of :func:`telegram_json`, plus what was computed, what matched,
    and how sure the algorithm is."""
    data: dict[str, Any] = telegram_json(reading.telegram)["bcc"]
    check = reading.telegram.bcc_check
    if check is not None:
        computed = {"sum7": check.sum7, "xor": check.xor}
        data["computed"] = {k: f"0x{v:02x}" for k, v in computed.items() if v is not None}
        data["matched"] = [a.value for a in BccAlgorithm if check.matches(a)]
    if reading.bcc_certainty is not None:
        data["certainty"] = reading.bcc_certainty.value
        data["note"] = bcc_note(reading)
    return data


def reading_json(reading: Reading) -> dict[str, Any]:
    """:func:`telegram_json` plus where, how and when it was read, and how sure its BCC
    algorithm is (``bcc``: ``computed``, ``matched``, ``certainty``, ``note``)."""
    data = telegram_json(reading.telegram)
    data["bcc"] = _bcc_json(reading)
    data["port"] = reading.port
    data["line"] = reading.line.value
    data["timing"] = {
        "requested_at": _utc(reading.requested_at),
        "first_byte_at": _utc(reading.first_byte_at),
        "done_at": _utc(reading.done_at),
        "answer_delay_s": round(reading.answer_delay, 3),  # to the millisecond
        "duration_s": round(reading.duration, 3),
    }
    data["attempts"] = reading.attempts
    return data


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
        items = list(obj.items())
        if not items:
            out.append("{}")
            return
        out.append("{")
        for index, (key, value) in enumerate(items):
            if not isinstance(key, str):
                raise UsageError(f"JSON object keys must be strings, got {key!r}")
            out.append(_separator(index, indent, level + 1))
            out.append(json.dumps(key))
            out.append(": ")
            _encode(value, out, indent, level + 1)
        out.append(_closing(indent, level))
        out.append("}")
    elif isinstance(obj, Sequence) and not isinstance(obj, bytes | bytearray):
        if not obj:
            out.append("[]")
            return
        out.append("[")
        for index, value in enumerate(obj):
            out.append(_separator(index, indent, level + 1))
            _encode(value, out, indent, level + 1)
        out.append(_closing(indent, level))
        out.append("]")
    else:
        raise UsageError(f"cannot write {type(obj).__name__} as JSON")


def _separator(index: int, indent: int | None, level: int) -> str:
    if indent is None:
        return ", " if index else ""
    return ("," if index else "") + "\n" + " " * (indent * level)


def _closing(indent: int | None, level: int) -> str:
    return "" if indent is None else "\n" + " " * (indent * level)


def registers_table(telegram: Telegram) -> str:
    """An aligned plain-text table: code, name, value (right-aligned), unit; one line each."""
    rows = [("code", "name", "value", "unit")]
    for ds in telegram.data_sets:
        values = [format_value(ds.value)]
        values.extend(format_value(v.text if v.number is None else v.number) for v in ds.values[1:])
        rows.append((ds.address, ds.name or "-", " ".join(values), ds.unit or ""))
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    lines = [
        f"{code:<{widths[0]}}  {name:<{widths[1]}}  {value:>{widths[2]}}  {unit}".rstrip()
        for code, name, value, unit in rows
    ]
    return "\n".join(lines) + "\n"


def reading_csv_row(reading: Reading) -> list[str]:
    """One row for :data:`CSV_FIELDS`: request time (ISO 8601 UTC), port, the register values.

    A register missing from the telegram gives an empty cell; values keep the meter's digits.
    """
    registers = reading.telegram.registers
    row = [_utc(reading.requested_at), reading.port]
    for name in CSV_FIELDS[2:]:
        value = registers.get(name)
        row.append("" if value is None else format_value(value))
    return row
