"""How the outputs describe each register to the outside world, as data.

Home Assistant (device class, state class, icon) and Prometheus (metric name, help text) by
register name; the register itself (code, unit, width) comes from the protocol's table
(:data:`~kamstrup382.protocol.REGISTERS`), which knows nothing of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["HOME_ASSISTANT", "PROMETHEUS", "HomeAssistantSensor", "PrometheusMetric"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeAssistantSensor:
    """A register as a Home Assistant MQTT sensor (``None``: left out of the config)."""

    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusMetric:
    """The metric a register is exported as; registers sharing a name share a family."""

    name: str
    help: str


_TARIFF_HELP = "Energy per tariff register (1.20.1, 1.20.2; a 382C's 1.8.1 to 1.8.4) in kWh"
_PEAK_HELP = "Highest demand-period average power (1.6 or 1.6.0 this month, 1.6*1 last month) in kW"

#: By register name, for every register of the table.
HOME_ASSISTANT: Mapping[str, HomeAssistantSensor] = {
    "customer_number": HomeAssistantSensor(icon="mdi:identifier"),
    "energy": HomeAssistantSensor(device_class="energy", state_class="total_increasing"),
    "tariff_1": HomeAssistantSensor(device_class="energy", state_class="total_increasing"),
    "tariff_2": HomeAssistantSensor(device_class="energy", state_class="total_increasing"),
    "tariff_3": HomeAssistantSensor(device_class="energy", state_class="total_increasing"),
    "tariff_4": HomeAssistantSensor(device_class="energy", state_class="total_increasing"),
    "hour_counter": HomeAssistantSensor(
        device_class="duration", state_class="total_increasing", icon="mdi:timer-outline"
    ),
    "pulse_input": HomeAssistantSensor(state_class="total_increasing", icon="mdi:pulse"),
    "actual_peak": HomeAssistantSensor(device_class="power", state_class="measurement"),
    "last_month_peak": HomeAssistantSensor(device_class="power", state_class="measurement"),
}

#: By register name; a register left out is not exported (the customer number).
PROMETHEUS: Mapping[str, PrometheusMetric] = {
    "energy": PrometheusMetric(
        name="kamstrup382_energy_kwh_total", help="Energy register 1.20 in kWh, all tariffs"
    ),
    "tariff_1": PrometheusMetric(name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP),
    "tariff_2": PrometheusMetric(name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP),
    "tariff_3": PrometheusMetric(name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP),
    "tariff_4": PrometheusMetric(name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP),
    "hour_counter": PrometheusMetric(
        name="kamstrup382_hour_counter_hours", help="Operating hours counter 1.31"
    ),
    "pulse_input": PrometheusMetric(
        name="kamstrup382_pulse_input_pulses_total",
        help="Pulses counted on the pulse input 1.26",
    ),
    "actual_peak": PrometheusMetric(name="kamstrup382_peak_power_kw", help=_PEAK_HELP),
    "last_month_peak": PrometheusMetric(name="kamstrup382_peak_power_kw", help=_PEAK_HELP),
}
