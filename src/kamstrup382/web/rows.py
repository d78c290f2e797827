"""Flat rows for the API: one dict per record, the same columns in JSON and in CSV.

Register values are exact ``Decimal`` in the storage; in a row they become a JSON number (an
``int`` when whole, else a ``float`` of the same decimal text) so that plots can use them. CSV
cells are the JSON text of the same value, so a CSV download and the API agree digit for digit.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from kamstrup382.protocol import REGISTERS
from kamstrup382.storage.records import AttemptRecord, MeterStatus, ReadingRecord
from kamstrup382.web.buckets import BucketRow

__all__ = [
    "ATTEMPT_COLUMNS",
    "CONSUMPTION_COLUMNS",
    "PEAK_COLUMNS",
    "READING_COLUMNS",
    "REGISTER_NAMES",
    "attempt_row",
    "consumption_row",
    "csv_text",
    "json_number",
    "peak_row",
    "reading_row",
    "seconds",
    "status_row",
]

Row = dict[str, Any]

REGISTER_NAMES: tuple[str, ...] = tuple(r.name for r in REGISTERS)

READING_COLUMNS: tuple[str, ...] = (
    "meter",
    "slot",
    "read_at",
    "identification",
    "type_number",
    *REGISTER_NAMES,
    "bcc_algorithm",
    "answer_delay",
    "duration",
    "attempts",
)
CONSUMPTION_COLUMNS: tuple[str, ...] = ("start", "end", "energy", "tariff_1", "tariff_2")
PEAK_COLUMNS: tuple[str, ...] = ("read_at", "actual_peak", "last_month_peak")
ATTEMPT_COLUMNS: tuple[str, ...] = ("slot", "at", "ok", "duration", "attempts", "kind")


def json_number(value: Decimal) -> int | float:
    """A register value as a JSON number: ``int`` when whole, else the float of its text."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _time(value: datetime) -> str:
    return value.isoformat()


def reading_row(record: ReadingRecord) -> Row:
    values = record.values.as_dict()
    row: Row = {
        "meter": record.meter,
        "slot": _time(record.slot),
        "read_at": _time(record.read_at),
        "identification": record.identification,
        "type_number": record.type_number,
    }
    for name in REGISTER_NAMES:
        value = values[name]  # None: a register this meter does not have, null (CSV: empty)
        row[name] = json_number(value) if isinstance(value, Decimal) else value
    row["bcc_algorithm"] = record.bcc_algorithm
    row["answer_delay"] = seconds(record.answer_delay)
    row["duration"] = seconds(record.duration)
    row["attempts"] = record.attempts
    return row


def seconds(value: float) -> float:
    """A duration as shown: to the millisecond (``0.251``, not ``0.250999999999749``)."""
    return round(value, 3)


def peak_row(record: ReadingRecord) -> Row:
    row: Row = {
        "read_at": _time(record.read_at),
        "actual_peak": json_number(record.values.actual_peak),
    }
    last = record.values.last_month_peak  # the 382C has none: null
    row["last_month_peak"] = None if last is None else json_number(last)
    return row


def consumption_row(bucket: BucketRow) -> Row:
    return {
        "start": _time(bucket.start),
        "end": _time(bucket.end),
        "energy": json_number(bucket.energy),
        "tariff_1": json_number(bucket.tariff_1),
        "tariff_2": json_number(bucket.tariff_2),
    }


def attempt_row(record: AttemptRecord) -> Row:
    return {
        "slot": _time(record.slot),
        "at": _time(record.at),
        "ok": record.ok,
        "duration": seconds(record.duration),
        "attempts": record.attempts,
        "kind": record.kind,
    }


def status_row(status: MeterStatus | None) -> Row:
    if status is None:
        return {
            "last_success": None,
            "last_error": None,
            "last_error_kind": None,
            "last_error_message": None,
            "successes": 0,
            "failures": 0,
            "success_rate": None,
        }
    return {
        "last_success": _time(status.last_success) if status.last_success else None,
        "last_error": _time(status.last_error) if status.last_error else None,
        "last_error_kind": status.last_error_kind,
        "last_error_message": status.last_error_message,
        "successes": status.successes,
        "failures": status.failures,
        "success_rate": status.success_rate,
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def csv_text(columns: Sequence[str], rows: Iterable[Row]) -> str:
    """CSV with a header line; each cell is the JSON text of the row's value (``""`` for null)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return out.getvalue()
