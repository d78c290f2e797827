"""The Kamstrup 382's KMP registers (382J, 382Jx3, 382Lx7, 382M), declared once, as data.

Register ids as the 382Lx7 ESPHome component and PyKMP publish them (see docs/kmp.md). The
``unit`` here is what the register is expected to carry; the unit byte in each reply is what
a reading reports (sources disagree on a few, the meter does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from kamstrup382.protocol.registers import RegisterKind

__all__ = [
    "KMP_382_REGISTERS",
    "KMP_REGISTER_BY_ID",
    "KMP_REGISTER_BY_NAME",
    "KmpRegister",
    "register_name",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class KmpRegister:
    id: int
    name: str
    description: str
    kind: RegisterKind
    unit: str


def _phases(first: int, name: str, description: str, unit: str) -> tuple[KmpRegister, ...]:
    return tuple(
        KmpRegister(
            id=first + n,
            name=f"{name}_l{n + 1}",
            description=f"{description} L{n + 1}",
            kind=RegisterKind.GAUGE,
            unit=unit,
        )
        for n in range(3)
    )


#: The 382 register set a readout asks for by default, in this order.
KMP_382_REGISTERS: tuple[KmpRegister, ...] = (
    KmpRegister(
        id=0x0001, name="energy", description="Energy in", kind=RegisterKind.COUNTER, unit="kWh"
    ),
    KmpRegister(
        id=0x0002,
        name="energy_out",
        description="Energy out",
        kind=RegisterKind.COUNTER,
        unit="kWh",
    ),
    KmpRegister(
        id=0x000D,
        name="energy_hires",
        description="Energy in, high resolution",
        kind=RegisterKind.COUNTER,
        unit="kWh",
    ),
    KmpRegister(
        id=0x000E,
        name="energy_out_hires",
        description="Energy out, high resolution",
        kind=RegisterKind.COUNTER,
        unit="kWh",
    ),
    KmpRegister(id=0x03FF, name="power", description="Power in", kind=RegisterKind.GAUGE, unit="W"),
    KmpRegister(
        id=0x0400, name="power_out", description="Power out", kind=RegisterKind.GAUGE, unit="W"
    ),
    KmpRegister(
        id=0x0027,
        name="max_power",
        description="Maximum power",
        kind=RegisterKind.GAUGE,
        unit="W",
    ),
    *_phases(0x041E, "voltage", "Voltage", "V"),
    *_phases(0x0434, "current", "Current", "A"),
    *_phases(0x0438, "power", "Power in", "W"),
)

KMP_REGISTER_BY_ID = MappingProxyType({r.id: r for r in KMP_382_REGISTERS})
KMP_REGISTER_BY_NAME = MappingProxyType({r.name: r for r in KMP_382_REGISTERS})


def register_name(register_id: int) -> str | None:
    """The 382 register's name (``None``: not one of the 382's)."""
    register = KMP_REGISTER_BY_ID.get(register_id)
    return None if register is None else register.name
