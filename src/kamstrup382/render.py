"""Telegrams and readings as JSON, text tables and CSV rows: pure functions, no I/O.

Used by ``k382 decode`` and ``k382 read``. A reading's JSON is the one shape of
:mod:`kamstrup382.documents`. Register values are exact (:class:`~decimal.Decimal`) all the way:
:func:`dumps` writes them as JSON numbers with the digits the meter sent (``000018,3`` ->
``18.3``, ``0000053`` -> ``53``, ``000000,0`` -> ``0.0``), never through a float.
"""

from __future__ import annotations

from typing import Any

from kamstrup382.documents import (
    dumps,
    format_value,
    identification_document,
    reading_document,
    registers_document,
    utc,
)
from kamstrup382.protocol import REGISTERS, BccAlgorithm, Telegram
from kamstrup382.reader.bcc_memory import BccCertainty
from kamstrup382.reader.reading import Reading

__all__ = [
    "CSV_FIELDS",
    "bcc_note",
    "dumps",
    "format_value",
    "reading_csv_row",
    "reading_json",
    "registers_table",
    "telegram_json",
]

#: Columns of :func:`reading_csv_row`: when the request was sent, the port, every register of
#: every dialect (a register the meter does not have: an empty cell).
CSV_FIELDS: tuple[str, ...] = ("read_at", "port", *(reg.name for reg in REGISTERS))


def telegram_json(telegram: Telegram) -> dict[str, Any]:
    """A telegram (``k382 decode``): the identification, the dialect it names, every register
    keyed by name in the order sent (named in that dialect), and the BCC that matched; the same
    parts as a reading's (``documents``)."""
    return {
        "identification": identification_document(telegram.identification),
        "dialect": telegram.dialect.name,
        "registers": registers_document(telegram),
        "bcc": {
            "algorithm": telegram.bcc_algorithm.value,
            "value": f"0x{telegram.bcc:02x}",
            "valid": True,  # a Telegram exists only once its BCC matched
        },
    }


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
    """The ``bcc`` object of a reading, plus what was received, what was computed, what
    matched, and how sure the algorithm is."""
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
    """A reading in the one shape (:func:`~kamstrup382.documents.reading_document`), with
    what ``k382 read`` adds: the BCC's details and the instants of the readout."""
    data = reading_document(reading)
    data["bcc"] = _bcc_json(reading)
    data["timing"].update(
        {
            "requested_at": utc(reading.requested_at),
            "first_byte_at": utc(reading.first_byte_at),
            "done_at": utc(reading.done_at),
        }
    )
    return data


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
    row = [utc(reading.requested_at), reading.port]
    for name in CSV_FIELDS[2:]:
        value = registers.get(name)
        row.append("" if value is None else format_value(value))
    return row
