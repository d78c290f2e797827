"""How records map to table columns, shared by both backends.

One column per register, named after it (read from the ``REGISTERS`` table):

- SQLite keeps every numeric register as an exact ``INTEGER`` in units of its last printed
  digit: kWh, h and pulse counts as they are, the peaks (one decimal) in tenths of a kW. They
  come back as ``Decimal`` with the register's number of decimals (``183`` -> ``18.3``).
  Times are ``INTEGER`` microseconds since 1970-01-01 UTC.
- PostgreSQL keeps them as ``NUMERIC(digits + decimals, decimals)`` and times as ``timestamptz``.

The customer number is text in both (leading zeros are part of it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kamstrup382.protocol.registers import REGISTERS, Register, RegisterKind
from kamstrup382.storage.records import ConsumptionRow

__all__ = [
    "CONSUMPTION_REGISTERS",
    "COUNTER_REGISTERS",
    "NUMERIC_REGISTERS",
    "REGISTER_COLUMNS",
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


def aware(at: datetime) -> datetime:
    """``at`` as an aware datetime: a naive one is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def to_micros(at: datetime) -> int:
    """Microseconds since the epoch (UTC); a naive ``at`` is taken as UTC."""
    return (aware(at) - _EPOCH) // _MICRO


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def consumption_rows(
    rows: Iterable[tuple[str, datetime, Decimal, Decimal, Decimal]],
) -> Iterator[ConsumptionRow]:
    """Differences between consecutive ``(meter, read_at, energy, tariff_1, tariff_2)`` rows.

    The rows must come ordered by meter, then time. A counter that went down wrapped: the
    difference is taken modulo the register's range (``(b - a) mod 10**7``).
    """
    energy_wrap, t1_wrap, t2_wrap = (r.wraps_at for r in CONSUMPTION_REGISTERS)
    previous: tuple[str, datetime, Decimal, Decimal, Decimal] | None = None
    for row in rows:
        meter, at, energy, t1, t2 = row
        if previous is not None and previous[0] == meter:
            yield ConsumptionRow(
                meter,
                previous[1],
                at,
                _wrapped(energy - previous[2], energy_wrap),
                _wrapped(t1 - previous[3], t1_wrap),
                _wrapped(t2 - previous[4], t2_wrap),
            )
        previous = row


def _wrapped(delta: Decimal, wraps_at: int) -> Decimal:
    # Decimal's % keeps the sign of the dividend: add the range once instead
    return delta + wraps_at if delta < 0 else delta
