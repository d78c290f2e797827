"""What the dashboard shows of a meter's latest readings, for mode A and KMP meters alike.

- :data:`COLUMNS`: the meter table's register columns, mode A's table first, then the KMP
  registers of another name (``energy`` is one column: 1.20 on a mode A meter, ``0x0001`` on a
  KMP one, both kWh); :func:`shown_columns` keeps those some meter's latest reading has.
- :func:`current_registers`: each register of a meter with its value from the last reading in
  which it was read and that reading's time. A mode A reading has all its registers; a KMP
  meter may leave one out of an answer (it is then absent from that reading, never 0): its
  value comes from an earlier reading, at most :data:`LOOKBACK` before the latest, and says
  when it was read. Only a KMP meter whose latest reading lacks one of the 382's registers
  costs a query (of that day's readings); every other meter's registers are its latest
  reading's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kamstrup382.documents import utc
from kamstrup382.protocol import KAMSTRUP_382, REGISTERS
from kamstrup382.protocol.kmp import KMP_382_REGISTERS, KMP_REGISTER_BY_NAME
from kamstrup382.storage.base import Storage
from kamstrup382.storage.records import AnyReading, KmpReadingRecord

__all__ = ["COLUMNS", "LOOKBACK", "Column", "current_registers", "shown_columns"]

#: How far before a KMP meter's latest reading a register it left out is looked for.
LOOKBACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Column:
    """A register column of the meter table: its name, heading, unit and where it is read."""

    name: str
    description: str
    unit: str | None
    code: str


def _columns() -> tuple[Column, ...]:
    kmp_ids = {r.name: f"KMP 0x{r.id:04x}" for r in KMP_382_REGISTERS}
    columns = [
        Column(
            r.name,
            r.description,
            r.unit,
            r.code if r.name not in kmp_ids else f"{r.code}, {kmp_ids[r.name]}",
        )
        for r in REGISTERS
    ]
    names = {c.name for c in columns}
    columns += [
        Column(r.name, r.description, r.unit, kmp_ids[r.name])
        for r in KMP_382_REGISTERS
        if r.name not in names
    ]
    return tuple(columns)


#: Every register column, in the order the table shows them.
COLUMNS: tuple[Column, ...] = _columns()
_DEFAULT = tuple(c for c in COLUMNS if c.name in KAMSTRUP_382.names)


def shown_columns(meters: Iterable[Iterable[str]]) -> list[Column]:
    """The columns of the registers some of ``meters`` has (each given by the names of its
    registers, as :func:`current_registers` gives them); a 685-382's when there is none."""
    sent = {name for names in meters for name in names}
    return [c for c in COLUMNS if c.name in sent] or list(_DEFAULT)


def _entry(value: Any, unit: str | None, read_at: datetime) -> dict[str, Any]:
    return {"value": value, "unit": unit, "read_at": utc(read_at)}


def current_registers(
    storage: Storage, meter: str, latest: AnyReading, document: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each register of ``meter`` with its value from the last reading where it was read
    (``document``: ``latest`` in the one shape of a reading), in the table's order."""
    found: dict[str, dict[str, Any]] = {}
    if isinstance(latest, KmpReadingRecord) and set(latest.values) != set(KMP_REGISTER_BY_NAME):
        units = {r.name: r.unit for r in KMP_382_REGISTERS}
        earlier = storage.readings(meter, latest.read_at - LOOKBACK, latest.read_at)
        for record in earlier:  # in read_at order: a later reading's value replaces
            if isinstance(record, KmpReadingRecord) and record.read_at <= latest.read_at:
                for name, value in record.values.items():
                    if isinstance(value, Decimal):
                        found[name] = _entry(value, units.get(name), record.read_at)
    for name, register in document["registers"].items():
        found[name] = _entry(register["value"], register["unit"], latest.read_at)
    order = {c.name: i for i, c in enumerate(COLUMNS)}
    return dict(sorted(found.items(), key=lambda item: order.get(item[0], len(order))))
