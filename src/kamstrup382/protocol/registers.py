"""The registers of a Kamstrup 382, declared once, as data.

Everything else (decoder names, encoder formats, the emulator, storage columns, the outputs'
descriptions, the dashboard) reads this table, by register code or name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["REGISTERS", "REGISTER_BY_CODE", "REGISTER_BY_NAME", "Register", "RegisterKind"]


class RegisterKind(enum.StrEnum):
    TEXT = "text"  # kept as text (customer number, with its leading zeros)
    COUNTER = "counter"  # only grows (until the register wraps)
    GAUGE = "gauge"  # goes up and down


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    """One register of the data block.

    ``digits`` and ``decimals`` give the width the meter prints (``000018,3`` is 6 + 1);
    ``shown_unit`` is the unit printed after ``*`` in the telegram (``None``: none printed);
    ``unit`` is the unit of the value, printed or implied.
    """

    code: str
    name: str
    description: str
    kind: RegisterKind
    digits: int
    decimals: int = 0
    shown_unit: str | None = None
    unit: str | None = None

    @property
    def wraps_at(self) -> int:
        """The first value the register cannot show: it rolls over to 0 there."""
        return int(10**self.digits)


REGISTERS: tuple[Register, ...] = (
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

REGISTER_BY_CODE: dict[str, Register] = {r.code: r for r in REGISTERS}
REGISTER_BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}
