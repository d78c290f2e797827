"""The mode A dialects of the Kamstrup 382 family, as data, and how a reply picks its own.

A dialect is what one meter model prints and guarantees: its register table (codes, widths,
units, :mod:`.registers`) and the rules its values keep (the energy register is the sum of
the tariffs, the maximum power bounds the peaks and the rise of the counters). Two are known:

- :data:`KAMSTRUP_382`, the 685-382 of the specification: identification ``/KAM 685-382-OK-15``
  (a 685 type number), codes ``1.20``, ``1.20.1``, ``1.20.2``, ..., decimal comma;
- :data:`KAMSTRUP_382C`, the 382C: identification ``/KAM 68438BC450000`` (a 684 type code),
  OBIS-style codes ``1.8.0``, ``1.8.1`` ... ``1.8.4``, ``96.8.0``, ``0.128.1``, ``1.6.0`` with a
  decimal point and no leading zeros (``1.078*kW``), no last month's peak.

:func:`dialect_of` chooses from the identification line: the first dialect that claims it (the
685-382: a 685 type number, which the identification's own expression parsed; another: its
pattern of the text, manufacturer ``KAM``), else the 685-382 (the specification's meter: what
every identification was read as before dialects existed). Sources of each
dialect's facts: docs/protocol.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from kamstrup382.errors import ProtocolError, UsageError
from kamstrup382.protocol.identification import Identification, parse_identification
from kamstrup382.protocol.registers import (
    KAMSTRUP_382C_REGISTERS,
    KAMSTRUP_685_382_REGISTERS,
    Register,
)

__all__ = [
    "DIALECTS",
    "KAMSTRUP_382",
    "KAMSTRUP_382C",
    "Dialect",
    "dialect_named",
    "dialect_of",
    "dialect_of_stored",
]


def printed_pattern(register: Register) -> re.Pattern[str]:
    """The exact text a register is printed as: its digits (with leading zeros or none), and
    its decimals after its decimal mark."""
    if register.padded:
        whole = f"[0-9]{{{register.digits}}}"
    else:
        whole = f"(?:0|[1-9][0-9]{{0,{register.digits - 1}}})"
    if register.decimals:
        return re.compile(f"{whole}{re.escape(register.separator)}[0-9]{{{register.decimals}}}")
    return re.compile(whole)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """What one meter model prints and guarantees in its telegrams.

    ``name`` is the dialect's key (``kamstrup-382c``), ``label`` the meter model in words.
    ``identification``: the pattern of the identification's text (after ``/KAM`` and the baud
    character) that tells this model; ``None`` for the model told by a 685 type number
    (:attr:`Identification.type_number`, ``685-X3X2X1-Y2Y1-Z2Z1`` after ``/KAM``, which the
    identification line's own expression takes apart and checks). ``registers``: every register
    it prints, in its order, with its width and unit. ``total`` = the sum of ``parts`` up to
    ``rounding`` (whole-kWh registers each rounded down: ``len(parts) - 1`` at most), modulo
    their wrap. The maximum power is ``phases x volts x amps_per_phase`` watts,
    ``default_phases`` when the type number is unknown. ``energy_counters`` rise at most the
    maximum power times the hours elapsed, plus ``rounding``; ``hour_counter`` at most the hours
    elapsed plus one; ``unbounded_counters`` (a pulse input) at any rate. ``actual_peak`` (and
    ``last_month_peak``, ``None`` for a model without one) are at most the maximum power; the
    actual peak goes down and last month's peak changes only across a month boundary.
    """

    name: str
    label: str
    identification: re.Pattern[str] | None
    registers: tuple[Register, ...]
    total: str
    parts: tuple[str, ...]
    rounding: Decimal
    amps_per_phase: int
    volts: int
    default_phases: int
    energy_counters: tuple[str, ...]
    hour_counter: str
    unbounded_counters: tuple[str, ...]
    customer: str
    actual_peak: str
    last_month_peak: str | None
    _by_name: dict[str, Register] = field(init=False, repr=False, compare=False)
    #: This meter's registers by the code it prints them with: the one look-up by code, a
    #: dictionary the dialect holds (read it, never change it), built once with the dialect.
    by_code: Mapping[str, Register] = field(init=False, repr=False, compare=False)
    _codes: frozenset[str] = field(init=False, repr=False, compare=False)
    _patterns: dict[str, re.Pattern[str]] = field(init=False, repr=False, compare=False)
    #: Every register that only grows (until it wraps).
    counters: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: The actual peak, and last month's where the model has one.
    peaks: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: The names of every register this meter prints.
    names: frozenset[str] = field(init=False, repr=False, compare=False)
    #: The most a meter of 1, 2 and 3 phases can deliver, in kW (:meth:`max_power_kw`).
    _max_power: dict[int, Decimal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {r.name: r for r in self.registers}
        last = () if self.last_month_peak is None else (self.last_month_peak,)
        object.__setattr__(self, "peaks", (self.actual_peak, *last))
        counters = (*self.energy_counters, self.hour_counter, *self.unbounded_counters)
        object.__setattr__(self, "counters", counters)
        object.__setattr__(self, "names", frozenset(by_name))
        max_power = {phases: self._power(phases) for phases in (1, 2, 3)}
        object.__setattr__(self, "_max_power", max_power)
        named = (
            self.total,
            *self.parts,
            *self.energy_counters,
            self.hour_counter,
            *self.unbounded_counters,
            self.customer,
            *self.peaks,
        )
        unknown = [name for name in named if name not in by_name]
        if unknown:
            raise UsageError(f"dialect {self.name}: no register {', '.join(unknown)}")
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "by_code", {r.code: r for r in self.registers})
        object.__setattr__(self, "_codes", frozenset(self.by_code))
        object.__setattr__(self, "_patterns", {r.code: printed_pattern(r) for r in self.registers})

    @property
    def codes(self) -> frozenset[str]:
        """The codes of every register this meter prints."""
        return self._codes

    def register(self, name: str) -> Register:
        return self._by_name[name]

    def register_at(self, code: str) -> Register | None:
        """The register this meter prints with ``code``, or ``None`` (an unknown code)."""
        return self.by_code.get(code)

    def printed(self, register: Register, text: str) -> bool:
        """Whether ``text`` is exactly how this meter prints ``register``'s value."""
        return self._patterns[register.code].fullmatch(text) is not None

    def max_power_kw(self, phases: int | None = None) -> Decimal:
        """The most a meter of ``phases`` phases can deliver, in kW."""
        count = self.default_phases if phases is None else phases
        known = self._max_power.get(count)
        return self._power(count) if known is None else known

    def _power(self, phases: int) -> Decimal:
        return Decimal(phases * self.volts * self.amps_per_phase) / 1000

    def phases_of(self, identification: Identification) -> int:
        """The phases of the meter that sent ``identification``, from its type number."""
        type_number = identification.type_number
        return self.default_phases if type_number is None else type_number.phases

    def claims(self, identification: Identification) -> bool:
        """Whether ``identification`` is this model's."""
        if self.identification is None:
            return identification.type_number is not None
        return (
            identification.manufacturer.upper() == "KAM"
            and self.identification.fullmatch(identification.text) is not None
        )


KAMSTRUP_382 = Dialect(
    name="kamstrup-382",
    label="Kamstrup 685-382",
    identification=None,  # a 685 type number: 685-382-OK-15
    registers=KAMSTRUP_685_382_REGISTERS,
    total="energy",
    parts=("tariff_1", "tariff_2"),
    rounding=Decimal(1),
    amps_per_phase=105,  # "kWh meter 5(105)A", Kamstrup 382 data sheet
    volts=253,  # 230 V + 10 % (EN 50160)
    default_phases=3,
    energy_counters=("energy", "tariff_1", "tariff_2"),
    hour_counter="hour_counter",
    unbounded_counters=("pulse_input",),
    customer="customer_number",
    actual_peak="actual_peak",
    last_month_peak="last_month_peak",
)

KAMSTRUP_382C = Dialect(
    name="kamstrup-382c",
    label="Kamstrup 382C",
    # "68438BC450000": a 684 type code of 13 characters (its fields are not published)
    identification=re.compile(r"684[0-9A-Z]{10}"),
    registers=KAMSTRUP_382C_REGISTERS,
    total="energy",
    parts=("tariff_1", "tariff_2", "tariff_3", "tariff_4"),
    rounding=Decimal(3),  # four whole-kWh tariffs, each rounded down, against the total
    amps_per_phase=105,  # a Kamstrup 382: 5(105)A
    volts=253,
    default_phases=3,
    energy_counters=("energy", "tariff_1", "tariff_2", "tariff_3", "tariff_4"),
    hour_counter="hour_counter",
    unbounded_counters=("pulse_input",),
    customer="customer_number",
    actual_peak="actual_peak",
    last_month_peak=None,
)

#: Every dialect, in the order :func:`dialect_of` tries them.
DIALECTS: tuple[Dialect, ...] = (KAMSTRUP_382, KAMSTRUP_382C)
_BY_NAME = {d.name: d for d in DIALECTS}


def dialect_of(identification: Identification) -> Dialect:
    """The dialect of the meter that sent ``identification``: the first that claims it, else
    the 685-382's."""
    for dialect in DIALECTS:
        if dialect.claims(identification):
            return dialect
    return KAMSTRUP_382


def dialect_of_stored(identification: str | None) -> Dialect | None:
    """The dialect of a stored identification (the line without its ``/``: ``KAM
    68438BC450000``); ``None`` when there is none or it does not parse (edited by hand)."""
    if identification is None:
        return None
    try:
        return dialect_of(parse_identification(f"/{identification}".encode("ascii")))
    except (UnicodeEncodeError, ProtocolError):
        return None


def dialect_named(name: str) -> Dialect:
    """The dialect called ``name`` (``kamstrup-382``, ``kamstrup-382c``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise UsageError(f"no dialect {name!r}; known: {known}") from None
