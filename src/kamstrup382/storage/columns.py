"""How records map to table columns, shared by both backends.

One column per register, named after it (read from the ``REGISTERS`` table):

- SQLite keeps every numeric register as an exact ``INTEGER`` in units of the last digit any
  dialect prints: kWh, h and pulse counts as they are, the actual peak in thousandths of a kW
  (the 382C prints three decimals), last month's peak in tenths. They come back as
  ``Decimal`` with the number of decimals the meter's dialect prints (``18300`` -> ``18.3``
  for a 685-382, ``1078`` -> ``1.078`` for a 382C: :func:`as_printed`). Times are ``INTEGER``
  microseconds since 1970-01-01 UTC.
- PostgreSQL keeps them as ``NUMERIC`` (the actual peak ``NUMERIC(9, 3)``) and times as
  ``timestamptz``.

A register the meter does not have (tariffs 3 and 4 of a 685-382, last month's peak of a 382C)
is ``NULL`` in both, never 0. The customer number is text in both (leading zeros are part of
it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kamstrup382.protocol.dialects import dialect_of_stored
from kamstrup382.protocol.registers import REGISTERS, Register, RegisterKind
from kamstrup382.storage.records import ConsumptionRow

__all__ = [
    "CONSUMPTION_REGISTERS",
    "COUNTER_REGISTERS",
    "NUMERIC_REGISTERS",
    "REGISTER_COLUMNS",
    "as_printed",
    "aware",
    "consumption_rows",
    "from_micros",
    "to_micros",
]

#: Column names of the registers, in table order.
REGISTER_COLUMNS: tuple[str, ...] = tuple(r.name for r in REGISTERS)
NUMERIC_REGISTERS: tuple[Register, ...] = tuple(
    r for r in REGISTERS if r.kind is not RegisterKind.TEXT
)
COUNTER_REGISTERS: tuple[Register, ...] = tuple(
    r for r in REGISTERS if r.kind is RegisterKind.COUNTER
)
#: The registers whose differences make a :class:`ConsumptionRow`.
CONSUMPTION_REGISTERS: tuple[Register, ...] = tuple(
    r for r in REGISTERS if r.name in ("energy", "tariff_1", "tariff_2")
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def as_printed(values: dict[str, Any], identification: str) -> dict[str, Any]:
    """``values`` read back from the database with the decimals the meter prints, in the
    dialect its stored ``identification`` (without ``/``) names: ``18.300`` -> ``18.3`` for a
    685-382. An identification that does not parse (edited by hand) leaves them as they are."""
    dialect = dialect_of_stored(identification)
    if dialect is None:
        return values
    shown = dict(values)
    for register in dialect.registers:
        value = values.get(register.name)
        if isinstance(value, Decimal) and register.kind is not RegisterKind.TEXT:
            exact = value.quantize(Decimal(1).scaleb(-register.decimals))
            if exact == value:  # never a digit lost
                shown[register.name] = exact
    return shown


def aware(at: datetime) -> datetime:
    """``at`` as an aware datetime: a naive one is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def to_micros(at: datetime) -> int:
    """Microseconds since the epoch (UTC); a naive ``at`` is taken as UTC."""
    return (aware(at) - _EPOCH) // _MICRO


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def consumption_rows(
    rows: Iterable[tuple[str, datetime, Decimal, Decimal | None, Decimal | None]],
) -> Iterator[ConsumptionRow]:
    """Differences between consecutive ``(meter, read_at, energy, tariff_1, tariff_2)`` rows.

    The rows must come ordered by meter, then time. A mode A counter that went down wrapped:
    the difference is taken modulo the register's range (``(b - a) mod 10**7``). A KMP reading
    has no tariffs (``None``: the 382's KMP register set has none), and so has the difference
    from or to it; its energy counter has no known range, so an energy that went down where a
    KMP reading is one of the two (the meter exchanged, its register reset) gives no row: the
    next difference starts from the new value.
    """
    energy_wrap, t1_wrap, t2_wrap = (r.wraps_at for r in CONSUMPTION_REGISTERS)
    previous: tuple[str, datetime, Decimal, Decimal | None, Decimal | None] | None = None
    for row in rows:
        meter, at, energy, t1, t2 = row
        if previous is not None and previous[0] == meter:
            p1, p2 = previous[3], previous[4]
            if t1 is not None and t2 is not None and p1 is not None and p2 is not None:
                yield ConsumptionRow(
                    meter,
                    previous[1],
                    at,
                    _wrapped(energy - previous[2], energy_wrap),
                    _wrapped(t1 - p1, t1_wrap),
                    _wrapped(t2 - p2, t2_wrap),
                )
            elif energy >= previous[2]:
                yield ConsumptionRow(meter, previous[1], at, energy - previous[2], None, None)
        previous = row


def _wrapped(delta: Decimal, wraps_at: int) -> Decimal:
    # Decimal's % keeps the sign of the dividend: add the range once instead
    return delta + wraps_at if delta < 0 else delta
