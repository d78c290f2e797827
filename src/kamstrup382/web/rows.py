"""Flat rows for the API: one dict per record, the same columns in JSON and in CSV.

A reading's CSV columns depend on its protocol: a mode A meter's readings have
:data:`READING_COLUMNS` (its registers, identification, BCC, answer delay), a KMP meter's
:data:`KMP_READING_COLUMNS` (the 382's KMP registers, GetType and GetSerialNo, exchanges);
a meter read in both (its ``protocol`` changed) gets :data:`MIXED_READING_COLUMNS`, every
column of both with ``protocol`` first, empty where a reading has none. No column of one
protocol is made up for the other.

Register values are exact ``Decimal`` in the storage; in a row they become a JSON number (an
``int`` when whole, else a ``float`` of the same decimal text) so that plots can use them. CSV
cells are the JSON text of the same value, so a CSV download and the API agree digit for digit.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from kamstrup382.protocol import REGISTERS
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.storage.records import (
    AnyReading,
    AttemptRecord,
    KmpReadingRecord,
    MeterStatus,
    ReadingRecord,
)
from kamstrup382.storage.rows import KMP_COLUMNS
from kamstrup382.web.buckets import BucketRow

__all__ = [
    "ATTEMPT_COLUMNS",
    "CONSUMPTION_COLUMNS",
    "KMP_READING_COLUMNS",
    "KMP_REGISTER_NAMES",
    "MIXED_READING_COLUMNS",
    "PEAK_COLUMNS",
    "PHASE_COLUMNS",
    "READING_COLUMNS",
    "REGISTER_NAMES",
    "attempt_row",
    "consumption_row",
    "csv_text",
    "json_number",
    "kmp_reading_row",
    "peak_row",
    "phase_row",
    "reading_columns",
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
KMP_REGISTER_NAMES: tuple[str, ...] = tuple(r.name for r in KMP_382_REGISTERS)

#: The columns of a KMP meter's readings: those of its stored row.
KMP_READING_COLUMNS: tuple[str, ...] = KMP_COLUMNS
MIXED_READING_COLUMNS: tuple[str, ...] = (
    "meter",
    "slot",
    "read_at",
    "protocol",
    "identification",
    "type_number",
    "meter_type",
    "software_revision",
    "serial",
    *REGISTER_NAMES,
    *(name for name in KMP_REGISTER_NAMES if name not in REGISTER_NAMES),
    "bcc_algorithm",
    "answer_delay",
    "duration",
    "exchanges",
    "attempts",
)
CONSUMPTION_COLUMNS: tuple[str, ...] = ("start", "end", "energy", "tariff_1", "tariff_2")
PEAK_COLUMNS: tuple[str, ...] = ("read_at", "actual_peak", "last_month_peak")
#: A KMP meter's power, voltages and currents at each reading (its gauges).
PHASE_COLUMNS: tuple[str, ...] = (
    "read_at",
    "power",
    "power_out",
    *(f"{q}_l{n}" for q in ("voltage", "current", "power") for n in (1, 2, 3)),
)
ATTEMPT_COLUMNS: tuple[str, ...] = ("slot", "at", "ok", "duration", "attempts", "kind")


def json_number(value: Decimal) -> int | float:
    """A register value as a JSON number: ``int`` when whole, else the float of its text."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _time(value: datetime) -> str:
    return value.isoformat()


def reading_columns(protocols: Collection[str]) -> tuple[str, ...]:
    """The CSV columns of readings of ``protocols`` (``iec``, ``kmp``; none: mode A's)."""
    if "kmp" not in protocols:
        return READING_COLUMNS
    return KMP_READING_COLUMNS if "iec" not in protocols else MIXED_READING_COLUMNS


def reading_row(record: AnyReading) -> Row:
    """A reading's row, of either protocol (keys: its protocol's columns and ``protocol``)."""
    if isinstance(record, KmpReadingRecord):
        return kmp_reading_row(record)
    values = record.values.as_dict()
    row: Row = {
        "protocol": record.protocol,
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


def kmp_reading_row(record: KmpReadingRecord) -> Row:
    """A KMP reading's row: the registers it has, null (CSV: empty) for those it has not."""
    row: Row = {
        "protocol": record.protocol,
        "meter": record.meter,
        "slot": _time(record.slot),
        "read_at": _time(record.read_at),
        "meter_type": f"0x{record.meter_type:04x}",
        "software_revision": record.software_revision,
        "serial": record.serial,
    }
    for name in KMP_REGISTER_NAMES:
        value = record.values.get(name)
        row[name] = None if value is None else json_number(value)
    row["duration"] = seconds(record.duration)
    row["exchanges"] = record.exchanges
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


def phase_row(record: KmpReadingRecord) -> Row:
    """A KMP reading's gauges (W, V, A): null for a register the reading has not."""
    row: Row = {"read_at": _time(record.read_at)}
    for name in PHASE_COLUMNS[1:]:
        value = record.values.get(name)
        row[name] = None if value is None else json_number(value)
    return row


def consumption_row(bucket: BucketRow) -> Row:
    return {
        "start": _time(bucket.start),
        "end": _time(bucket.end),
        "energy": json_number(bucket.energy),
        # a KMP meter's bucket has no tariffs: null (CSV: empty), never 0
        "tariff_1": None if bucket.tariff_1 is None else json_number(bucket.tariff_1),
        "tariff_2": None if bucket.tariff_2 is None else json_number(bucket.tariff_2),
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
    """CSV with a header line; each cell is the JSON text of the row's value (``""`` for null,
    and for a column the row has not: a mode A reading's KMP columns, and the reverse)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()
