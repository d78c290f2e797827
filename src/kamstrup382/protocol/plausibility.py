"""What a meter guarantees about its telegrams, per dialect, as data; and the checks of it.

The block check character cannot see every damage: a character doubled in one register and
the same character dropped in another keeps the 7-bit sum and the XOR (``1.20.2(00000200*kWh)``
beside ``1.31(000482*h)``), and so do two digits swapped inside a register (``0000035`` for
``0000053``). What the meter itself guarantees catches them:

- **in one telegram** (:func:`check_telegram`): every register is there, printed with exactly
  its width and unit (``0000053*kWh``: 7 digits; ``000018,3*kW``: 6 + 1), energy is tariff 1 +
  tariff 2 (each whole-kWh register rounded down, so they agree within 1 kWh, modulo the
  registers' wrap), and no peak above the meter's maximum power;
- **between two readings of one meter** (:func:`check_history`): counters never go down
  (except at their wrap) and never rise faster than the maximum power allows over the time
  between them, the hour counter never rises more than the hours elapsed plus one, the
  customer number never changes, last month's peak changes only across a month boundary and
  the actual peak goes down only there.

A swap or a shift that breaks none of these leaves a telegram the meter could have sent: a
value that differs from the true one by a swap of two digits *and* still fits every rule.
The tests and ``bench/bench_faults.py`` measure how often that is left (0 in their runs).

**The maximum power.** The 685-382 is a "kWh meter 5(105)A" (Kamstrup 382 data sheet: base
current 5 A, maximum current 105 A per phase) on 230 V mains, which the grid keeps within
+10 % (EN 50160): a phase delivers at most 253 V x 105 A = 26,565 W, a meter
``phases x 26,565 W``, its phases from the identification's type number (``685-382``: X3 = 3),
3 when the type number is unknown. Peaks (average power over a demand period) and the rise of
the energy registers are bounded by it.

**Time.** The history rules take the two observations' wall-clock times (UTC, from the
reader's clock, not the meter's). When the clock went back (``current.at <= previous.at``)
the time between them is unknown, so no rule that needs it is applied: a counter may then
have risen any amount, last month's peak may have changed and the actual peak gone down
(a month boundary may lie between them). What needs no time still holds: the customer
number, no peak above the maximum power, and no counter going *down* -- without a rate, a
counter is judged to have gone down when it fell by less than half its range (a wrap needs
a rise through the top, which at the maximum power takes years: a 7-digit kWh register at
80 kW fills in 14 years). The pulse input counts pulses of another device, whose rate this
meter cannot bound: the same half-range rule is all it gets, always.

**Month boundaries.** The meter keeps local time and moves its peak to ``1.6*1`` at local
midnight of the first of a month, in a zone the collector does not know: any UTC offset
between -14 h and +14 h. A boundary lies between two observations when the first of some
month, 00:00 UTC, lies within ``(previous.at - 14 h, current.at + 14 h]``.

No I/O, no clock: the caller passes the telegrams, values and times.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from kamstrup382.errors import ImplausibleError, UsageError
from kamstrup382.protocol.dialects import KAMSTRUP_382, KAMSTRUP_382C, Dialect
from kamstrup382.protocol.registers import Register
from kamstrup382.protocol.telegram import MeterValues, Telegram

__all__ = [
    "KAMSTRUP_382",
    "KAMSTRUP_382C",
    "Dialect",
    "Observation",
    "check_history",
    "check_telegram",
]

#: A data set's first group in a well-formed block: the address, the value and its unit.
_FIRST_GROUP = re.compile(r"([^()\r\n!]*)\(([^()*]*)(?:\*([^()]*))?\)")
_HOUR = Decimal(3600)
#: Any UTC offset a meter's local time may have.
_ZONE_SLACK = timedelta(hours=14)


def _modulo(value: Decimal, wrap: int) -> Decimal:
    """``value`` modulo ``wrap``, in ``[0, wrap)`` (``Decimal``'s ``%`` keeps the sign)."""
    rest = value % wrap
    return rest + wrap if rest < 0 else rest


def _printed_width(register: Register) -> int:
    return register.digits + (register.decimals + 1 if register.decimals else 0)


def _shown(register: Register, value: Decimal | str) -> str:
    """A value as the meter prints it (for messages), with its unit."""
    if isinstance(value, str):
        text = value
    else:
        pad = f"0{_printed_width(register)}" if register.padded else ""
        text = f"{value:{pad}.{register.decimals}f}".replace(".", register.separator)
    return f"{text} {register.unit}" if register.unit else text


def check_telegram(telegram: Telegram, dialect: Dialect | None = None) -> None:
    """Raise :class:`ImplausibleError` if ``telegram`` is not one the meter can have sent.

    ``dialect``: the meter's; by default the one its identification names (``telegram.dialect``).
    Every register present, each printed with exactly its width and unit; the sum rule; no
    peak above the maximum power. The error names the rule, the register and the values, with
    the register's byte offset in the stream and its line.
    """
    if dialect is None:
        dialect = telegram.dialect
    codes = dialect.codes
    found: dict[str, tuple[str, str | None, int]] = {}  # code: value, unit, its group's ordinal
    for ordinal, (address, text, unit) in enumerate(telegram.groups):
        if address in found and address in codes:
            first, again = _place(telegram, found[address][2]), _place(telegram, ordinal)
            raise ImplausibleError(
                f"register {address} printed twice (lines {first[1]} and {again[1]})",
                rule="duplicate",
                register=address,
                offset=again[0],
                line=again[1],
            )
        found[address] = (text, unit, ordinal)
    missing = [r.code for r in dialect.registers if r.code not in found]
    if missing:
        raise ImplausibleError(
            f"telegram lacks register{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            rule="missing",
            register=missing[0] if len(missing) == 1 else None,
        )
    for register in dialect.registers:
        text, unit, ordinal = found[register.code]
        if not dialect.printed(register, text):
            offset, line = _place(telegram, ordinal)
            raise ImplausibleError(
                f"{register.description.lower()} {register.code}({text}) is not "
                f"{_printed_width(register)} characters as the meter prints it",
                rule="width",
                register=register.code,
                offset=offset,
                line=line,
            )
        if unit != register.shown_unit:
            offset, line = _place(telegram, ordinal)
            shown = "no unit" if register.shown_unit is None else f"unit {register.shown_unit}"
            raise ImplausibleError(
                f"{register.description.lower()} {register.code} printed with unit {unit!r}, "
                f"the meter prints {shown}",
                rule="unit",
                register=register.code,
                offset=offset,
                line=line,
            )
    values = telegram.register_values()

    def where(code: str) -> tuple[int, int]:
        return _place(telegram, found[code][2])

    _check_sum(dialect, values, where)
    _check_peaks(dialect, values.__getitem__, dialect.phases_of(telegram.identification), where)


def _place(telegram: Telegram, ordinal: int) -> tuple[int, int]:
    """The stream offset of the value of a telegram's data set number ``ordinal`` (from 0, in
    :attr:`Telegram.groups`) and its line, for an error message."""
    block = telegram.data_block
    matches = (m for m in _FIRST_GROUP.finditer(block) if m[1])
    match = next(itertools.islice(matches, ordinal, None))
    return telegram.block_offset + match.start(2), block.count("\n", 0, match.start()) + 1


#: Where a register's value stands in the telegram, by its code: stream offset and line.
_Where = Callable[[str], tuple[int, int]]


def _check_sum(dialect: Dialect, values: Mapping[str, Decimal | str], where: _Where) -> None:
    total = dialect.register(dialect.total)
    wrap = total.wraps_at
    parts = [dialect.register(name) for name in dialect.parts]
    number = values[total.name]
    assert isinstance(number, Decimal)  # the width was checked: digits only
    summed = Decimal(0)
    for part in parts:
        value = values[part.name]
        assert isinstance(value, Decimal)
        summed += value
    if _modulo(number - summed, wrap) <= dialect.rounding:
        return
    offset, line = where(total.code)
    terms = " + ".join(
        f"{part.description.lower()} {_shown(part, values[part.name])}" for part in parts
    )
    raise ImplausibleError(
        f"{total.name} {_shown(total, number)} is not {terms} (+0/{dialect.rounding} for rounding)",
        rule="sum",
        offset=offset,
        line=line,
    )


def _check_peaks(
    dialect: Dialect,
    value_of: Callable[[str], Any],
    phases: int,
    where: _Where | None = None,
) -> None:
    """No peak above the maximum power; ``value_of``: a register's value by its name."""
    limit = dialect.max_power_kw(phases)
    for name in dialect.peaks:
        register = dialect.register(name)
        value = value_of(name)
        assert isinstance(value, Decimal)
        if value > limit:
            offset, line = where(register.code) if where else (None, None)
            raise ImplausibleError(
                f"{register.description.lower()} {_shown(register, value)} is above the "
                f"{limit} kW a {phases}-phase meter can deliver",
                rule="peak",
                register=register.code,
                offset=offset,
                line=line,
            )


@dataclass(frozen=True, slots=True)
class Observation:
    """A meter's values at a wall-clock instant (timezone-aware), with its phases."""

    values: MeterValues
    at: datetime
    phases: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise UsageError(f"an observation's time must be timezone-aware, got {self.at!r}")
        if not isinstance(self.phases, int) or isinstance(self.phases, bool) or self.phases < 1:
            raise UsageError(f"phases must be a positive integer, got {self.phases!r}")


def _month_boundary_between(start: datetime, end: datetime) -> bool:
    """Whether the meter (local time, any UTC offset) may have begun a month between."""
    earliest = start.astimezone(UTC) - _ZONE_SLACK
    year, month = earliest.year, earliest.month + 1
    if month > 12:
        year, month = year + 1, 1
    first = datetime(year, month, 1, tzinfo=UTC)
    return first <= end.astimezone(UTC) + _ZONE_SLACK


def check_history(
    previous: Observation, current: Observation, dialect: Dialect = KAMSTRUP_382
) -> None:
    """Raise :class:`ImplausibleError` if ``current`` cannot follow ``previous`` on one meter.

    See the module's docstring for the rules and what is left out when the clock went back.
    A ``previous`` reading that lacks a register of ``dialect`` was another model's: refused
    with the rule of another customer number (``customer``), another meter.
    """
    before, now = previous.values, current.values
    customer = dialect.register(dialect.customer)
    lacking = [r.name for r in dialect.registers if getattr(before, r.name) is None]
    if lacking:  # the last reading was another model's: another meter, like a new customer
        raise ImplausibleError(
            f"the last reading has no {', '.join(lacking)}: it is not a {dialect.label}'s, "
            "another meter was read before",
            rule="customer",
            register=customer.code,
        )
    if getattr(before, customer.name) != getattr(now, customer.name):
        raise ImplausibleError(
            f"customer number {getattr(now, customer.name)} is not the meter's "
            f"{getattr(before, customer.name)} of the last reading",
            rule="customer",
            register=customer.code,
        )
    _check_peaks(dialect, partial(getattr, now), current.phases)
    seconds = Decimal(str((current.at - previous.at).total_seconds()))
    timed = seconds > 0
    hours = seconds / _HOUR if timed else Decimal(0)
    limit = dialect.max_power_kw(current.phases)
    for name in dialect.counters:
        register = dialect.register(name)
        old, new = getattr(before, name), getattr(now, name)
        wrap = register.wraps_at
        rise = _modulo(new - old, wrap)
        if name in dialect.unbounded_counters or not timed:
            allowed: Decimal | None = None
        elif name == dialect.hour_counter:
            allowed = hours + 1
        else:
            allowed = limit * hours + dialect.rounding
        if allowed is None or allowed >= wrap / 2:
            if rise > wrap / 2:  # fell by less than half the range: down, not a wrap
                raise _down(register, old, new)
            continue
        if rise <= allowed:
            continue
        if new < old:  # fell, and no wrap the rate allows explains it
            raise _down(register, old, new)
        rule = "hours_rate" if name == dialect.hour_counter else "counter_rate"
        raise ImplausibleError(
            f"{register.description.lower()} rose from {_shown(register, old)} to "
            f"{_shown(register, new)} in {hours.quantize(Decimal('0.001'))} h, at most "
            f"{allowed.quantize(Decimal('0.001'))} possible",
            rule=rule,
            register=register.code,
        )
    if not timed or _month_boundary_between(previous.at, current.at):
        return
    if dialect.last_month_peak is not None:
        _check_last_month_peak(dialect.register(dialect.last_month_peak), before, now)
    actual = dialect.register(dialect.actual_peak)
    if getattr(now, actual.name) < getattr(before, actual.name):
        raise ImplausibleError(
            f"actual peak went down from {_shown(actual, getattr(before, actual.name))} to "
            f"{_shown(actual, getattr(now, actual.name))} with no month boundary between the "
            "readings",
            rule="peak_down",
            register=actual.code,
        )


def _check_last_month_peak(last: Register, before: MeterValues, now: MeterValues) -> None:
    old, new = getattr(before, last.name), getattr(now, last.name)
    if old != new:
        raise ImplausibleError(
            f"last month's peak changed from {_shown(last, old)} to "
            f"{_shown(last, new)} with no month boundary between the readings",
            rule="last_month_peak",
            register=last.code,
        )


def _down(register: Register, old: Decimal, new: Decimal) -> ImplausibleError:
    return ImplausibleError(
        f"{register.description.lower()} went down from {_shown(register, old)} to "
        f"{_shown(register, new)}",
        rule="counter_down",
        register=register.code,
    )
