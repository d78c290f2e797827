"""The registers of a Kamstrup 382, declared once, as data.

Everything else (decoder names, encoder formats, the emulator, storage columns, Home Assistant
discovery, Prometheus metrics, the dashboard) reads this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["REGISTERS", "REGISTER_BY_CODE", "REGISTER_BY_NAME", "Register", "RegisterKind"]


class RegisterKind(enum.StrEnum):
    TEXT = "text"  # kept as text (customer number, with its leading zeros)
    COUNTER = "counter"  # only grows (until the register wraps)
    GAUGE = "gauge"  # goes up and down


@dataclass(frozen=True, slots=True)
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
    decimals: int
    shown_unit: str | None
    unit: str | None
    ha_device_class: str | None
    ha_state_class: str | None
    ha_icon: str | None
    prometheus_name: str | None
    prometheus_help: str | None

    @property
    def wraps_at(self) -> int:
        """The first value the register cannot show: it rolls over to 0 there."""
        return int(10**self.digits)


# One row per register, positional in the field order of Register: kept as a table.
# fmt: off
REGISTERS: tuple[Register, ...] = (
    Register(
        "0.0", "customer_number", "Customer number", RegisterKind.TEXT, 8, 0, None, None,
        None, None, "mdi:identifier", None, None,
    ),
    Register(
        "1.20", "energy", "Energy register", RegisterKind.COUNTER, 7, 0, "kWh", "kWh",
        "energy", "total_increasing", None, "kamstrup382_energy_kwh_total",
        "Energy register 1.20 in kWh, all tariffs",
    ),
    Register(
        "1.20.1", "tariff_1", "Tariff 1", RegisterKind.COUNTER, 7, 0, "kWh", "kWh",
        "energy", "total_increasing", None, "kamstrup382_tariff_energy_kwh_total",
        "Energy per tariff register (1.20.1, 1.20.2) in kWh",
    ),
    Register(
        "1.20.2", "tariff_2", "Tariff 2", RegisterKind.COUNTER, 7, 0, "kWh", "kWh",
        "energy", "total_increasing", None, "kamstrup382_tariff_energy_kwh_total",
        "Energy per tariff register (1.20.1, 1.20.2) in kWh",
    ),
    Register(
        "1.31", "hour_counter", "Hour counter", RegisterKind.COUNTER, 7, 0, "h", "h",
        "duration", "total_increasing", "mdi:timer-outline", "kamstrup382_hour_counter_hours",
        "Operating hours counter 1.31",
    ),
    Register(
        "1.26", "pulse_input", "Pulse input", RegisterKind.COUNTER, 7, 0, None, None,
        None, "total_increasing", "mdi:pulse", "kamstrup382_pulse_input_pulses_total",
        "Pulses counted on the pulse input 1.26",
    ),
    Register(
        "1.6", "actual_peak", "Actual peak value", RegisterKind.GAUGE, 6, 1, "kW", "kW",
        "power", "measurement", None, "kamstrup382_peak_power_kw",
        "Highest demand-period average power (1.6 this month, 1.6*1 last month) in kW",
    ),
    Register(
        "1.6*1", "last_month_peak", "Last month's peak", RegisterKind.GAUGE, 6, 1, None, "kW",
        "power", "measurement", None, "kamstrup382_peak_power_kw",
        "Highest demand-period average power (1.6 this month, 1.6*1 last month) in kW",
    ),
)
# fmt: on

REGISTER_BY_CODE: dict[str, Register] = {r.code: r for r in REGISTERS}
REGISTER_BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}
