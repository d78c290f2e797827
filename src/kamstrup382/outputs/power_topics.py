"""What the MQTT power output publishes, as pure functions: topics, payloads, Home Assistant
discovery configs for the live power of the meters with pulse inputs. No I/O here;
:mod:`kamstrup382.outputs.power` sends what these return.

Topics (``P`` = ``topic_prefix``, ``D`` = ``discovery_prefix``)::

    P/power_status                       online | offline (retained; offline is the last will
                                         of the power output's own connection)
    P/<meter>/power                      one JSON object per update (see power_payload), QoS 0,
                                         not retained: a live figure, replaced within seconds
    P/<meter>/pulse_availability         online while the meter's pulse source delivers
    D/sensor/<node>/power/config         the "Power" sensor (W, measurement)
    D/sensor/<node>/pulse_energy/config  the "Energy (pulses)" sensor (kWh to three decimals,
                                         total_increasing): the register plus the pulses since
    P/<meter>/tariff                     1 | 2: the tariff the module last set on pin 4
                                         (retained)
    P/<meter>/tariff/set                 the select's command topic: 1 | 2
    D/select/<node>/tariff/config        the "Tariff" select (meters with a tariff output)

The sensors belong to the meter's device (the same identifiers as its device config: the
meter itself, :func:`~kamstrup382.outputs.discovery.device_id`); a meter without a
``unique_id`` is announced once its first reading says who it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kamstrup382.outputs.discovery import OFFLINE, ONLINE, DeviceFacts, Topics, device, node_id
from kamstrup382.pulses.live import PowerUpdate

__all__ = [
    "POWER_SENSORS",
    "PowerSensor",
    "PowerTopics",
    "power_configs",
    "power_payload",
    "tariff_config",
]

THOUSANDTH = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class PowerSensor:
    """One Home Assistant sensor of the power message: its key in the payload and its classes."""

    key: str
    name: str
    unit: str
    device_class: str
    state_class: str
    precision: int


#: The sensors of each meter with a pulse input, declared once.
POWER_SENSORS = (
    PowerSensor("power", "Power", "W", "power", "measurement", 0),
    PowerSensor("pulse_energy", "Energy (pulses)", "kWh", "energy", "total_increasing", 3),
)


@dataclass(frozen=True, slots=True)
class PowerTopics:
    """The power topics of one installation (beside the register topics of :class:`Topics`)."""

    topics: Topics

    @property
    def status(self) -> str:
        return f"{self.topics.prefix}/power_status"

    def power(self, meter: str) -> str:
        return f"{self.topics.prefix}/{meter}/power"

    def availability(self, meter: str) -> str:
        return f"{self.topics.prefix}/{meter}/pulse_availability"

    def discovery(self, meter: str, sensor: PowerSensor) -> str:
        return f"{self.topics.discovery_prefix}/sensor/{node_id(meter)}/{sensor.key}/config"

    def tariff(self, meter: str) -> str:
        return f"{self.topics.prefix}/{meter}/tariff"

    def tariff_command(self, meter: str) -> str:
        return f"{self.topics.prefix}/{meter}/tariff/set"

    def tariff_discovery(self, meter: str) -> str:
        return f"{self.topics.discovery_prefix}/select/{node_id(meter)}/tariff/config"


def _iso(update_at: Any) -> str | None:
    if update_at is None:
        return None
    text: str = update_at.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def power_payload(update: PowerUpdate) -> str:
    """The JSON of one update: ``power`` (W, one decimal; ``null`` before two pulses),
    ``pulse_energy`` (kWh, three decimals; ``null`` before the first readout), ``bounded``
    (no pulse for longer than the last interval: the figure is the bound), ``pulses``,
    ``rejected``, ``missed``, ``drift`` (kWh, of the last readout), ``pulse_at`` (the last
    pulse's instant), ``at`` (when this was said)."""
    energy = None if update.energy_kwh is None else update.energy_kwh.quantize(THOUSANDTH)
    return json.dumps(
        {
            "power": None if update.watts is None else round(update.watts, 1),
            "pulse_energy": None if energy is None else float(energy),
            "bounded": update.bounded,
            "pulses": update.pulses,
            "rejected": update.rejected,
            "missed": update.missed,
            "drift": None if update.drift_kwh is None else float(update.drift_kwh),
            "pulse_at": _iso(update.pulse_at),
            "at": _iso(update.at),
        },
        separators=(",", ":"),
    )


def power_configs(
    meter: str,
    facts: DeviceFacts,
    topics: PowerTopics,
    version: str,
    *,
    ident: str,
    dashboard_url: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) of each power sensor of ``meter``, whose device is ``ident``
    (:func:`~.discovery.device_id`: the meter itself, so a renamed meter keeps them)."""
    configs = []
    for sensor in POWER_SENSORS:
        payload: dict[str, Any] = {
            "name": sensor.name,
            "unique_id": f"{ident}_{sensor.key}",
            "state_topic": topics.power(meter),
            "value_template": "{{ value_json." + sensor.key + " }}",
            "unit_of_measurement": sensor.unit,
            "device_class": sensor.device_class,
            "state_class": sensor.state_class,
            "suggested_display_precision": sensor.precision,
            "availability": [
                {"topic": t, "payload_available": ONLINE, "payload_not_available": OFFLINE}
                for t in (topics.status, topics.availability(meter))
            ],
            "availability_mode": "all",
            "device": device(meter, facts, ident, dashboard_url),
            "origin": {"name": "kamstrup382", "sw_version": version},
        }
        configs.append((topics.discovery(meter, sensor), payload))
    return configs


def tariff_config(
    meter: str,
    facts: DeviceFacts,
    topics: PowerTopics,
    version: str,
    *,
    ident: str,
    dashboard_url: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """(topic, config) of the "Tariff" select of ``meter`` on device ``ident``: its state is
    what the module last set on pin 4, its command asks for the other."""
    return topics.tariff_discovery(meter), {
        "name": "Tariff",
        "unique_id": f"{ident}_tariff_select",
        "state_topic": topics.tariff(meter),
        "command_topic": topics.tariff_command(meter),
        "options": ["1", "2"],
        "icon": "mdi:cash-clock",
        "availability": [
            {"topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE}
        ],
        "device": device(meter, facts, ident, dashboard_url),
        "origin": {"name": "kamstrup382", "sw_version": version},
    }
