"""What a Kamstrup 382's KMP registers guarantee, checked on every reading, as data.

A KMP reply has a CRC-16 per frame: damage on the line is seen there, not here. These rules
catch what a CRC cannot: a register sent in a unit of another quantity, a value the register
cannot hold, a meter that answers with a counter going down, or up faster than the meter's
maximum power allows. Each broken rule is an :class:`~kamstrup382.errors.ImplausibleError`
whose ``rule`` names it and whose ``register`` is the register's id (``0x0001``):

- ``unit``: the reply's unit byte names a unit that is not the register's quantity (energy in
  GJ where kWh is the register's); a unit of the same quantity is converted exactly (Wh, kWh,
  MWh; W, kW; V, kV; A, kA: :func:`~kamstrup382.protocol.kmp.units.convert`).
- ``negative``: none of the 382's registers holds a negative value (energy and power out are
  registers of their own).
- ``hires``: the high-resolution energy registers show the same energy as the whole-kWh ones:
  they differ by less than 1 kWh (the whole register rounds or truncates) plus what the meter
  can count during the readout (its requests are answered one after the other).
- ``counter_down``, ``counter_rate``: between two readings of the same meter (the same serial
  number), a counter never goes down and rises at most :data:`MAX_POWER_KW` times the time
  between them (+ 1 kWh: the whole register's step).

A register the meter did not send is absent and checked by no rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from kamstrup382.errors import ImplausibleError
from kamstrup382.protocol.kmp.commands import RegisterValue
from kamstrup382.protocol.kmp.registers import KMP_REGISTER_BY_ID, KMP_REGISTER_BY_NAME
from kamstrup382.protocol.kmp.units import convert
from kamstrup382.protocol.registers import RegisterKind

__all__ = ["HIRES_PAIRS", "MAX_POWER_KW", "check_kmp_history", "kmp_values"]

#: The most a 382 delivers: three phases of 100 A at 230 V (the family's largest rating; the
#: counters' bound between readings).
MAX_POWER_KW = Decimal(3 * 230 * 100) / 1000
#: (whole register, high-resolution register): the same energy, in kWh.
HIRES_PAIRS: tuple[tuple[str, str], ...] = (
    ("energy", "energy_hires"),
    ("energy_out", "energy_out_hires"),
)
_HOUR = Decimal(3600)
#: The whole-kWh register's step.
_STEP_KWH = Decimal(1)


def _code(name: str) -> str:
    return f"0x{KMP_REGISTER_BY_NAME[name].id:04x}"


def kmp_values(registers: Iterable[RegisterValue], duration: float = 0.0) -> dict[str, Decimal]:
    """The 382 registers of one reading, by name, each in its table's unit; the rules that
    hold inside one reading checked (``duration``: the readout's seconds, for ``hires``).

    A register outside the 382's table is left out (the collector asks only for named ones).
    """
    values: dict[str, Decimal] = {}
    for register in registers:
        known = KMP_REGISTER_BY_ID.get(register.id)
        if known is None:
            continue
        code = f"0x{register.id:04x}"
        value = convert(register.value, register.unit, known.unit)
        if value is None:
            raise ImplausibleError(
                f"KMP register {known.name} ({code}) sent in {register.unit or 'no unit'!s}, "
                f"not in {known.unit} or a unit of its quantity",
                rule="unit",
                register=code,
            )
        if value < 0:
            raise ImplausibleError(
                f"KMP register {known.name} ({code}) is {value} {known.unit}: the 382's "
                "registers are never negative",
                rule="negative",
                register=code,
            )
        values[known.name] = value
    slack = MAX_POWER_KW * Decimal(repr(max(duration, 0.0))) / _HOUR
    for whole, hires in HIRES_PAIRS:
        if whole not in values or hires not in values:
            continue
        if abs(values[hires] - values[whole]) >= _STEP_KWH + slack:
            raise ImplausibleError(
                f"KMP {hires} {values[hires]} kWh and {whole} {values[whole]} kWh are not the "
                "same energy",
                rule="hires",
                register=_code(hires),
            )
    return values


_COUNTERS = tuple(
    name for name, r in KMP_REGISTER_BY_NAME.items() if r.kind is RegisterKind.COUNTER
)


def check_kmp_history(
    before: Mapping[str, Decimal], now: Mapping[str, Decimal], seconds: float
) -> None:
    """``now`` may follow ``before`` of the same meter ``seconds`` later (negative: the clock
    went back; only the counters' direction is checked then)."""
    limit = MAX_POWER_KW * Decimal(repr(max(seconds, 0.0))) / _HOUR + _STEP_KWH
    for name in _COUNTERS:
        old, new = before.get(name), now.get(name)
        if old is None or new is None:
            continue
        if new < old:
            raise ImplausibleError(
                f"KMP counter {name} went down from {old} to {new} kWh",
                rule="counter_down",
                register=_code(name),
            )
        if seconds >= 0 and new - old > limit:
            raise ImplausibleError(
                f"KMP counter {name} rose {new - old} kWh in {seconds:.0f} s: more than "
                f"{MAX_POWER_KW} kW allow",
                rule="counter_rate",
                register=_code(name),
            )
