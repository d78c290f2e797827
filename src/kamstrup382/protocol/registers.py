"""The registers of the Kamstrup 382 meters, declared once, as data: one table per dialect.

Each mode A dialect prints its own codes and widths (:data:`KAMSTRUP_685_382_REGISTERS`: the
685-382 of the specification, ``1.20(0000053*kWh)``; :data:`KAMSTRUP_382C_REGISTERS`: the
382C, OBIS-style codes, ``1.8.0(0036886*kWh)``, ``1.6.0(1.078*kW)``), but a register keeps one
*name* in every dialect (``energy``, ``tariff_1`` ... ``tariff_4``, ``hour_counter``,
``pulse_input``, ``actual_peak``, ``last_month_peak``), so that storage, MQTT, Prometheus and
the dashboard treat every meter alike. :data:`REGISTERS` is the union by name, in storage
order: what the outputs know of a register whichever meter sent it. Which table a telegram
is read with is chosen from its identification line (:mod:`.dialects`).

Everything else (decoder names, encoder formats, the emulator, storage columns, the outputs'
descriptions, the dashboard) reads these tables, by register code or name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "KAMSTRUP_382C_REGISTERS",
    "KAMSTRUP_685_382_REGISTERS",
    "REGISTERS",
    "REGISTER_BY_CODE",
    "REGISTER_BY_NAME",
    "VALUE_LIMITS",
    "Register",
    "RegisterKind",
    "ValueLimit",
]


class RegisterKind(enum.StrEnum):
    TEXT = "text"  # kept as text (customer number, with its leading zeros)
    COUNTER = "counter"  # only grows (until the register wraps)
    GAUGE = "gauge"  # goes up and down


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    """One register of the data block.

    ``digits`` and ``decimals`` give the width the meter prints (``000018,3`` is 6 + 1),
    ``separator`` the decimal mark (the 685-382's comma, the 382C's point); ``padded``: the
    integer part is printed with leading zeros to ``digits`` (``000018,3``), else with none,
    at most ``digits`` (the 382C's ``1.078``). ``shown_unit`` is the unit printed after ``*``
    in the telegram (``None``: none printed); ``unit`` is the unit of the value, printed or
    implied.
    """

    code: str
    name: str
    description: str
    kind: RegisterKind
    digits: int
    decimals: int = 0
    shown_unit: str | None = None
    unit: str | None = None
    separator: str = ","
    padded: bool = True

    @property
    def wraps_at(self) -> int:
        """The first value the register cannot show: it rolls over to 0 there."""
        return int(10**self.digits)


#: The Kamstrup 685-382 of the specification, in the order it prints them.
KAMSTRUP_685_382_REGISTERS: tuple[Register, ...] = (
    Register(
        code="0.0",
        name="customer_number",
        description="Customer number",
        kind=RegisterKind.TEXT,
        digits=8,
    ),
    Register(
        code="1.20",
        name="energy",
        description="Energy register",
        kind=RegisterKind.COUNTER,
        digits=7,
        shown_unit="kWh",
        unit="kWh",
    ),
    Register(
        code="1.20.1",
        name="tariff_1",
        description="Tariff 1",
        kind=RegisterKind.COUNTER,
        digits=7,
        shown_unit="kWh",
        unit="kWh",
    ),
    Register(
        code="1.20.2",
        name="tariff_2",
        description="Tariff 2",
        kind=RegisterKind.COUNTER,
        digits=7,
        shown_unit="kWh",
        unit="kWh",
    ),
    Register(
        code="1.31",
        name="hour_counter",
        description="Hour counter",
        kind=RegisterKind.COUNTER,
        digits=7,
        shown_unit="h",
        unit="h",
    ),
    Register(
        code="1.26",
        name="pulse_input",
        description="Pulse input",
        kind=RegisterKind.COUNTER,
        digits=7,
    ),
    Register(
        code="1.6",
        name="actual_peak",
        description="Actual peak value",
        kind=RegisterKind.GAUGE,
        digits=6,
        decimals=1,
        shown_unit="kW",
        unit="kW",
    ),
    Register(
        code="1.6*1",
        name="last_month_peak",
        description="Last month's peak",
        kind=RegisterKind.GAUGE,
        digits=6,
        decimals=1,
        unit="kW",  # implied: the meter prints no unit here
    ),
)


_685_382_BY_NAME = {r.name: r for r in KAMSTRUP_685_382_REGISTERS}


def _like_685_382(code: str, of: str, **changes: Any) -> Register:
    """The 685-382's register named ``of`` as another dialect prints it: under ``code``, with
    ``changes`` (a new name and description, another width); everything else is the
    685-382's, written once above."""
    return replace(_685_382_BY_NAME[of], code=code, **changes)


#: The Kamstrup 382C, in the order it prints them: OBIS-style codes, the published readout
#: (docs/protocol.md, "The 382C"): ``0.0.0(14410000)``, ``1.8.0(0036886*kWh)``,
#: ``1.8.1(0036886*kWh)`` ... ``1.8.4(0000000*kWh)``, ``96.8.0(0119899*h)``,
#: ``0.128.1(0000000)``, ``1.6.0(1.078*kW)``. No last month's peak. Each register is the
#: 685-382's of the same name under the 382C's code; tariffs 3 and 4 are printed like tariff 1,
#: and the actual peak in kW with a decimal point and three decimals.
KAMSTRUP_382C_REGISTERS: tuple[Register, ...] = (
    _like_685_382("0.0.0", "customer_number"),
    _like_685_382("1.8.0", "energy"),
    _like_685_382("1.8.1", "tariff_1"),
    _like_685_382("1.8.2", "tariff_2"),
    _like_685_382("1.8.3", "tariff_1", name="tariff_3", description="Tariff 3"),
    _like_685_382("1.8.4", "tariff_1", name="tariff_4", description="Tariff 4"),
    _like_685_382("96.8.0", "hour_counter"),
    _like_685_382("0.128.1", "pulse_input"),
    _like_685_382(
        "1.6.0",
        "actual_peak",
        digits=2,  # kW in the "[2.3] format" of Kamstrup's 382 displays; the 382's 80 kW fit
        decimals=3,
        separator=".",
        padded=False,
    ),
)

_TABLES = (KAMSTRUP_685_382_REGISTERS, KAMSTRUP_382C_REGISTERS)
#: The order of the names everywhere a reading is laid out (storage columns, CSV, the API).
_ORDER = (
    "customer_number",
    "energy",
    "tariff_1",
    "tariff_2",
    "tariff_3",
    "tariff_4",
    "hour_counter",
    "pulse_input",
    "actual_peak",
    "last_month_peak",
)


def _first_by_name() -> dict[str, Register]:
    first: dict[str, Register] = {}
    for table in _TABLES:
        for register in table:
            first.setdefault(register.name, register)
    return first


#: Every register name of every dialect, once, in :data:`_ORDER`: the 685-382's register where
#: it has one (its description, unit and kind hold for every dialect), else the 382C's.
REGISTERS: tuple[Register, ...] = tuple(_first_by_name()[name] for name in _ORDER)
#: The 685-382's table by code (a data set read without a dialect: the specification's meter).
REGISTER_BY_CODE: dict[str, Register] = {r.code: r for r in KAMSTRUP_685_382_REGISTERS}
REGISTER_BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}


@dataclass(frozen=True, slots=True)
class ValueLimit:
    """What a value of one register name may be in any dialect: below ``wraps_at``, with at
    most ``decimals`` decimals."""

    wraps_at: int
    decimals: int


#: Per numeric register name, the widest any dialect prints (the 685-382's peaks: 6 digits;
#: the 382C's actual peak: 3 decimals).
VALUE_LIMITS: dict[str, ValueLimit] = {
    name: ValueLimit(
        max(r.wraps_at for t in _TABLES for r in t if r.name == name),
        max(r.decimals for t in _TABLES for r in t if r.name == name),
    )
    for name in _ORDER
    if REGISTER_BY_NAME[name].kind is not RegisterKind.TEXT
}
