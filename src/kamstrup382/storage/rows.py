"""Records as table rows and back, for both SQL backends (through their :class:`Dialect`).

Three tables hold results: ``readings`` (mode A, :class:`ReadingRecord`), ``kmp_readings``
(KMP, :class:`KmpReadingRecord`, schema version 10) and ``failures``. A KMP reading has one
column per register of the 382 set (:data:`KMP_REGISTER_COLUMNS`), exact: on SQLite the
value's digits as ``TEXT`` (``"230.1"``, ``"12345.678"``: a KMP value's exponent is the
meter's, so no one scale fits every meter), on PostgreSQL ``NUMERIC`` without a scale. A
register the meter did not send is ``NULL``, never 0.

Queries that read both kinds at once (:meth:`~kamstrup382.storage.Storage.readings`, the
outbox) select *wide* rows: ``kind`` (0 mode A, 1 KMP), ``id``, ``meter``, ``slot``,
``read_at``, then the mode A columns, then the KMP columns, the other kind's ``NULL``
(:func:`wide_columns`, :func:`from_wide`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from kamstrup382.protocol import MeterValues
from kamstrup382.protocol.registers import REGISTERS, VALUE_LIMITS, RegisterKind
from kamstrup382.storage.columns import REGISTER_COLUMNS, as_printed
from kamstrup382.storage.dialect import Dialect
from kamstrup382.storage.records import (
    AnyReading,
    FailureRecord,
    KmpReadingRecord,
    ReadingRecord,
)

__all__ = [
    "FAILURE_COLUMNS",
    "KMP_COLUMNS",
    "KMP_REGISTER_COLUMNS",
    "READING_COLUMNS",
    "failure_from_row",
    "failure_row",
    "from_wide",
    "kmp_from_row",
    "kmp_row",
    "outbox_columns",
    "reading_from_row",
    "reading_row",
    "wide_columns",
]

#: The columns of a stored reading, in the order of :func:`reading_row`.
READING_COLUMNS: tuple[str, ...] = (
    "meter",
    "slot",
    "read_at",
    *REGISTER_COLUMNS,
    "identification",
    "type_number",
    "bcc_algorithm",
    "raw",
    "answer_delay",
    "duration",
    "attempts",
)
FAILURE_COLUMNS = (
    "meter",
    "slot",
    "failed_at",
    "kind",
    "message",
    "attempts",
    "duration",
    "raw",
)
#: The register columns of ``kmp_readings`` as migration 10 creates them: the names of
#: ``KMP_382_REGISTERS``, written out (a released migration never changes; a register added
#: to the set needs a migration of its own, and tests/storage checks the two agree).
KMP_REGISTER_COLUMNS: tuple[str, ...] = (
    "energy",
    "energy_out",
    "energy_hires",
    "energy_out_hires",
    "power",
    "power_out",
    "max_power",
    "voltage_l1",
    "voltage_l2",
    "voltage_l3",
    "current_l1",
    "current_l2",
    "current_l3",
    "power_l1",
    "power_l2",
    "power_l3",
)
#: The columns of a stored KMP reading, in the order of :func:`kmp_row`.
KMP_COLUMNS: tuple[str, ...] = (
    "meter",
    "slot",
    "read_at",
    "meter_type",
    "software_revision",
    "serial",
    *KMP_REGISTER_COLUMNS,
    "duration",
    "exchanges",
    "attempts",
)
#: Per register: its name and the number of decimals it is kept with, the most any dialect
#: prints (``None``: text, kept as it is).
_REGISTERS = tuple(
    (r.name, None if r.kind is RegisterKind.TEXT else VALUE_LIMITS[r.name].decimals)
    for r in REGISTERS
)
_FIRST_AFTER_REGISTERS = 3 + len(REGISTER_COLUMNS)
_KMP_FIRST_REGISTER = 6
_KMP_FIRST_AFTER = _KMP_FIRST_REGISTER + len(KMP_REGISTER_COLUMNS)
#: Where the mode A columns after ``read_at`` start in a wide row, and the KMP ones.
_WIDE_A = 5
_WIDE_KMP = _WIDE_A + len(READING_COLUMNS) - 3


def reading_row(r: ReadingRecord, d: Dialect) -> tuple[Any, ...]:
    """``r`` as the values of :data:`READING_COLUMNS`."""
    v = r.values
    registers = [
        value if decimals is None or value is None else d.to_register(value, decimals)
        for name, decimals in _REGISTERS
        for value in (getattr(v, name),)
    ]
    return (
        r.meter,
        d.to_time(r.slot),
        d.to_time(r.read_at),
        *registers,
        r.identification,
        r.type_number,
        str(r.bcc_algorithm),
        bytes(r.raw),
        float(r.answer_delay),
        float(r.duration),
        int(r.attempts),
    )


def kmp_row(r: KmpReadingRecord, d: Dialect) -> tuple[Any, ...]:
    """``r`` as the values of :data:`KMP_COLUMNS`; :class:`ValueError` for a register that is
    not one of the 382 set or a value that is not a finite ``Decimal``."""
    unknown = set(r.values) - set(KMP_REGISTER_COLUMNS)
    if unknown:
        raise ValueError(f"{r.meter}: no column for the KMP registers {sorted(unknown)}")
    registers = []
    for name in KMP_REGISTER_COLUMNS:
        value = r.values.get(name)
        if value is not None and not (isinstance(value, Decimal) and value.is_finite()):
            raise ValueError(f"{r.meter}: {name} must be a finite Decimal, got {value!r}")
        registers.append(None if value is None else d.to_exact(value))
    return (
        r.meter,
        d.to_time(r.slot),
        d.to_time(r.read_at),
        int(r.meter_type),
        str(r.software_revision),
        int(r.serial),
        *registers,
        float(r.duration),
        int(r.exchanges),
        int(r.attempts),
    )


def failure_row(f: FailureRecord, d: Dialect) -> tuple[Any, ...]:
    """``f`` as the values of :data:`FAILURE_COLUMNS`."""
    return (
        f.meter,
        d.to_time(f.slot),
        d.to_time(f.failed_at),
        f.kind,
        f.message,
        int(f.attempts),
        float(f.duration),
        None if f.raw is None else bytes(f.raw),
    )


def reading_from_row(row: Sequence[Any], d: Dialect) -> ReadingRecord:
    """A row of :data:`READING_COLUMNS` read back."""
    values: dict[str, Any] = {
        name: row[3 + i]
        if decimals is None or row[3 + i] is None
        else d.from_register(row[3 + i], decimals)
        for i, (name, decimals) in enumerate(_REGISTERS)
    }
    n = _FIRST_AFTER_REGISTERS
    values = as_printed(values, row[n])
    return ReadingRecord(
        meter=row[0],
        slot=d.from_time(row[1]),
        read_at=d.from_time(row[2]),
        values=MeterValues(**values),
        identification=row[n],
        type_number=row[n + 1],
        bcc_algorithm=row[n + 2],
        raw=bytes(row[n + 3]),
        answer_delay=row[n + 4],
        duration=row[n + 5],
        attempts=row[n + 6],
    )


def kmp_from_row(row: Sequence[Any], d: Dialect) -> KmpReadingRecord:
    """A row of :data:`KMP_COLUMNS` read back (the registers stored ``NULL`` left out)."""
    first, after = _KMP_FIRST_REGISTER, _KMP_FIRST_AFTER
    return KmpReadingRecord(
        meter=row[0],
        slot=d.from_time(row[1]),
        read_at=d.from_time(row[2]),
        meter_type=int(row[3]),
        software_revision=row[4],
        serial=int(row[5]),
        values={
            name: d.from_exact(value)
            for name, value in zip(KMP_REGISTER_COLUMNS, row[first:after], strict=True)
            if value is not None
        },
        duration=row[after],
        exchanges=int(row[after + 1]),
        attempts=int(row[after + 2]),
    )


def failure_from_row(row: Sequence[Any], d: Dialect) -> FailureRecord:
    """A row of :data:`FAILURE_COLUMNS` read back."""
    return FailureRecord(
        meter=row[0],
        slot=d.from_time(row[1]),
        failed_at=d.from_time(row[2]),
        kind=row[3],
        message=row[4],
        attempts=row[5],
        duration=row[6],
        raw=None if row[7] is None else bytes(row[7]),
    )


def wide_columns(kind: int, alias: str) -> str:
    """The select list of a wide row (see the module documentation) of ``kind`` (0: mode A
    from table ``alias``, 1: KMP), the other kind's columns ``NULL``."""
    mine = READING_COLUMNS[3:] if kind == 0 else KMP_COLUMNS[3:]
    theirs = KMP_COLUMNS[3:] if kind == 0 else READING_COLUMNS[3:]
    own = [f"{alias}.{c}" for c in mine]
    nulls = ["NULL"] * len(theirs)
    rest = [*own, *nulls] if kind == 0 else [*nulls, *own]
    common = [f"{alias}.{c}" for c in ("id", "meter", "slot", "read_at")]
    return ", ".join([f"{kind} AS kind", *common, *rest])


def outbox_columns() -> str:
    """The select list of ``outbox o`` left-joined to ``readings r`` and ``kmp_readings k``:
    the entry's id, then the wide row of the reading it points at."""
    common = [f"coalesce(r.{c}, k.{c})" for c in ("id", "meter", "slot", "read_at")]
    return ", ".join(
        [
            "o.id",
            "CASE WHEN o.reading_id IS NULL THEN 1 ELSE 0 END",
            *common,
            *(f"r.{c}" for c in READING_COLUMNS[3:]),
            *(f"k.{c}" for c in KMP_COLUMNS[3:]),
        ]
    )


def from_wide(row: Sequence[Any], d: Dialect) -> AnyReading:
    """A wide row read back as the record of its kind."""
    common = row[2:_WIDE_A]
    if int(row[0]) == 0:
        return reading_from_row([*common, *row[_WIDE_A:_WIDE_KMP]], d)
    return kmp_from_row([*common, *row[_WIDE_KMP:]], d)
