"""How the outputs describe each register to the outside world, as data.

Home Assistant (entity name, device class, state class, icon) and Prometheus (metric name, help
text) by register name; the register itself (code, unit, width) comes from the protocol's table
(:data:`~kamstrup382.protocol.REGISTERS`), which knows nothing of either. A KMP meter's registers
(:data:`~kamstrup382.protocol.kmp.KMP_REGISTER_BY_NAME`: 382J, Jx3, Lx7, M) have their own
tables, :data:`HOME_ASSISTANT_KMP` and :data:`PROMETHEUS_KMP`. The entities of a
meter's Home Assistant device that are not registers (when it was last read, whether its
readouts fail) are :data:`HOME_ASSISTANT_STATUS`; :mod:`kamstrup382.outputs.discovery` builds
the device's components from both, so another entity is one more entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "HOME_ASSISTANT",
    "HOME_ASSISTANT_KMP",
    "HOME_ASSISTANT_STATUS",
    "KMP_MODELS",
    "PROMETHEUS",
    "PROMETHEUS_KMP",
    "HomeAssistantEntity",
    "HomeAssistantSensor",
    "PrometheusMetric",
    "Source",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeAssistantSensor:
    """A register as a Home Assistant MQTT sensor (``None``: left out of the config)."""

    name: str
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None
    #: Shown under "Diagnostic" rather than as one of the device's main sensors.
    diagnostic: bool = False
    #: Decimals Home Assistant shows (``None``: the register table's, or Home Assistant's own).
    precision: int | None = None


class Source(StrEnum):
    """The message of a meter an entity reads its value from."""

    #: ``<topic_prefix>/<meter>/state``: one message per reading.
    STATE = "state"
    #: ``<topic_prefix>/<meter>/readout``: how the meter's readouts go (retained).
    READOUT = "readout"


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeAssistantEntity:
    """One entity of a meter's Home Assistant device, as data (a register's is derived from
    the register table and :data:`HOME_ASSISTANT`; the others are :data:`HOME_ASSISTANT_STATUS`).
    """

    #: The component's key in the device config, and the end of its unique id.
    key: str
    #: Home Assistant's platform: ``sensor``, ``binary_sensor``.
    platform: str = "sensor"
    name: str
    source: Source = Source.STATE
    #: The field of the source's JSON message that is the entity's value.
    field: str
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    icon: str | None = None
    precision: int | None = None
    diagnostic: bool = False
    #: Unavailable once no reading came for about 2.5 of the meter's intervals (``expire_after``).
    expires: bool = False
    #: Unavailable while the meter's last readout failed (besides the collector being offline).
    follows_meter: bool = True
    #: The source message's fields as the entity's attributes (``json_attributes_topic``).
    attributes: bool = False
    #: A binary sensor's values of ``field`` for on and off.
    payload_on: str | None = None
    payload_off: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusMetric:
    """The metric a register is exported as; registers sharing a name share a family.

    A name ending in ``_total`` is a counter, any other a gauge. ``scale`` turns the register's
    unit into the metric's (the hour counter's hours into seconds, Prometheus' base unit).
    """

    name: str
    help: str
    scale: Decimal = Decimal(1)
    #: A second label and its value, telling apart registers that share the name
    #: (``("phase", "l1")``); ``None``: the metric's only labels are the meter's.
    label: tuple[str, str] | None = None


_TARIFF_HELP = "Energy per tariff register (1.20.1, 1.20.2; a 382C's 1.8.1 to 1.8.4) in kWh"
_PEAK_HELP = "Highest demand-period average power (1.6 or 1.6.0 this month, 1.6*1 last month) in kW"

#: By register name, for every register of the table.
#: By register name, for every register of the table. Entity names: Home Assistant prefixes
#: them with the device name.
HOME_ASSISTANT: Mapping[str, HomeAssistantSensor] = {
    "customer_number": HomeAssistantSensor(
        name="Customer number", icon="mdi:identifier", diagnostic=True
    ),
    "energy": HomeAssistantSensor(
        name="Energy", device_class="energy", state_class="total_increasing"
    ),
    "tariff_1": HomeAssistantSensor(
        name="Energy tariff 1", device_class="energy", state_class="total_increasing"
    ),
    "tariff_2": HomeAssistantSensor(
        name="Energy tariff 2", device_class="energy", state_class="total_increasing"
    ),
    "tariff_3": HomeAssistantSensor(
        name="Energy tariff 3", device_class="energy", state_class="total_increasing"
    ),
    "tariff_4": HomeAssistantSensor(
        name="Energy tariff 4", device_class="energy", state_class="total_increasing"
    ),
    "hour_counter": HomeAssistantSensor(
        name="Hour counter",
        device_class="duration",
        state_class="total_increasing",
        icon="mdi:timer-outline",
        diagnostic=True,
    ),
    "pulse_input": HomeAssistantSensor(
        name="Pulse input", state_class="total_increasing", icon="mdi:pulse"
    ),
    "actual_peak": HomeAssistantSensor(
        name="Peak power this month", device_class="power", state_class="measurement"
    ),
    "last_month_peak": HomeAssistantSensor(
        name="Peak power last month", device_class="power", state_class="measurement"
    ),
}

#: The entities of a meter's device beyond its registers. Both stay available while the meter
#: fails (that is when they matter); only the collector going offline makes them unavailable.
HOME_ASSISTANT_STATUS: tuple[HomeAssistantEntity, ...] = (
    HomeAssistantEntity(
        key="last_reading",
        name="Last reading",
        field="read_at",
        device_class="timestamp",
        icon="mdi:clock-check-outline",
        diagnostic=True,
        follows_meter=False,
    ),
    HomeAssistantEntity(
        key="readout_failing",
        platform="binary_sensor",
        name="Readout failing",
        source=Source.READOUT,
        field="state",
        device_class="problem",
        diagnostic=True,
        follows_meter=False,
        attributes=True,
        payload_on="failing",
        payload_off="ok",
    ),
)

#: By register name; a register left out is not exported (the customer number).
PROMETHEUS: Mapping[str, PrometheusMetric] = {
    "energy": PrometheusMetric(
        name="kamstrup382_energy_kwh_total",
        help="Energy register in kWh (mode A 1.20 or 1.8.0, all tariffs; KMP 0x0001, energy in)",
    ),
    "tariff_1": PrometheusMetric(
        name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP, label=("tariff", "1")
    ),
    "tariff_2": PrometheusMetric(
        name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP, label=("tariff", "2")
    ),
    "tariff_3": PrometheusMetric(
        name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP, label=("tariff", "3")
    ),
    "tariff_4": PrometheusMetric(
        name="kamstrup382_tariff_energy_kwh_total", help=_TARIFF_HELP, label=("tariff", "4")
    ),
    "hour_counter": PrometheusMetric(
        name="kamstrup382_operating_seconds_total",
        help="Operating time counted by the meter (hour counter 1.31) in seconds",
        scale=Decimal(3600),
    ),
    "pulse_input": PrometheusMetric(
        name="kamstrup382_pulse_input_pulses_total",
        help="Pulses counted on the pulse input 1.26",
    ),
    "actual_peak": PrometheusMetric(
        name="kamstrup382_peak_power_kw", help=_PEAK_HELP, label=("period", "current_month")
    ),
    "last_month_peak": PrometheusMetric(
        name="kamstrup382_peak_power_kw", help=_PEAK_HELP, label=("period", "last_month")
    ),
}


# -- KMP meters (382J, 382Jx3, 382Lx7, 382M) ----------------------------------------------------


def _kmp_phases(
    name: str, label: str, device_class: str, precision: int
) -> dict[str, HomeAssistantSensor]:
    return {
        f"{name}_l{n}": HomeAssistantSensor(
            name=f"{label} L{n}",
            device_class=device_class,
            state_class="measurement",
            precision=precision,
        )
        for n in (1, 2, 3)
    }


#: A KMP meter's registers by name (:data:`~kamstrup382.protocol.kmp.KMP_REGISTER_BY_NAME`;
#: the unit is the register table's, to which the collector converts every value). The energy
#: registers are the Energy dashboard's (``total_increasing``), the rest ``measurement``.
HOME_ASSISTANT_KMP: Mapping[str, HomeAssistantSensor] = {
    "energy": HomeAssistantSensor(
        name="Energy", device_class="energy", state_class="total_increasing", precision=0
    ),
    "energy_out": HomeAssistantSensor(
        name="Energy out", device_class="energy", state_class="total_increasing", precision=0
    ),
    "energy_hires": HomeAssistantSensor(
        name="Energy (high resolution)",
        device_class="energy",
        state_class="total_increasing",
        precision=2,
    ),
    "energy_out_hires": HomeAssistantSensor(
        name="Energy out (high resolution)",
        device_class="energy",
        state_class="total_increasing",
        precision=2,
    ),
    "power": HomeAssistantSensor(
        name="Power", device_class="power", state_class="measurement", precision=0
    ),
    "power_out": HomeAssistantSensor(
        name="Power out", device_class="power", state_class="measurement", precision=0
    ),
    "max_power": HomeAssistantSensor(
        name="Maximum power", device_class="power", state_class="measurement", precision=0
    ),
    **_kmp_phases("voltage", "Voltage", "voltage", 0),
    **_kmp_phases("current", "Current", "current", 2),
    **_kmp_phases("power", "Power", "power", 0),
}

#: What a KMP meter's GetType answer is, by meter type, as far as a public source says (none
#: gives a 382's type code: the emulator answers 0x0382). A type not listed is shown as its
#: code: ``382 (KMP, meter type 0x0382)``.
KMP_MODELS: Mapping[int, str] = {}

_KMP_POWER_HELP = "Power registers of a KMP meter in W (phase: total for the sum register, l1..l3)"


def _kmp_phase_metrics(name: str, metric: str, help_text: str) -> dict[str, PrometheusMetric]:
    return {
        f"{name}_l{n}": PrometheusMetric(name=metric, help=help_text, label=("phase", f"l{n}"))
        for n in (1, 2, 3)
    }


#: A KMP meter's registers as Prometheus metrics, by register name. Energy in shares
#: ``kamstrup382_energy_kwh_total`` with mode A's energy register (the bill's figure of every
#: meter, one family); the power registers ``kamstrup382_power_watts`` with the label ``phase``
#: (``total`` for the sum register, ``l1``..``l3``). The pulse input's live power is
#: ``kamstrup382_pulse_power_watts`` (:mod:`kamstrup382.outputs.power_metrics`), so the two
#: never meet in one family.
PROMETHEUS_KMP: Mapping[str, PrometheusMetric] = {
    "energy": PROMETHEUS["energy"],
    "energy_out": PrometheusMetric(
        name="kamstrup382_energy_out_kwh_total",
        help="Energy out register of a KMP meter (0x0002) in kWh",
    ),
    "energy_hires": PrometheusMetric(
        name="kamstrup382_energy_hires_kwh_total",
        help="High-resolution energy in register of a KMP meter (0x000D) in kWh",
    ),
    "energy_out_hires": PrometheusMetric(
        name="kamstrup382_energy_out_hires_kwh_total",
        help="High-resolution energy out register of a KMP meter (0x000E) in kWh",
    ),
    "power": PrometheusMetric(
        name="kamstrup382_power_watts", help=_KMP_POWER_HELP, label=("phase", "total")
    ),
    "power_out": PrometheusMetric(
        name="kamstrup382_power_out_watts",
        help="Power out register of a KMP meter (0x0400) in W",
    ),
    "max_power": PrometheusMetric(
        name="kamstrup382_max_power_watts",
        help="Maximum power register of a KMP meter (0x0027) in W",
    ),
    **_kmp_phase_metrics("power", "kamstrup382_power_watts", _KMP_POWER_HELP),
    **_kmp_phase_metrics(
        "voltage", "kamstrup382_voltage_volts", "Voltage per phase of a KMP meter in V"
    ),
    **_kmp_phase_metrics(
        "current", "kamstrup382_current_amperes", "Current per phase of a KMP meter in A"
    ),
}
