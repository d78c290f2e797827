"""The power messages and their Home Assistant discovery configs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from kamstrup382.outputs.discovery import Topics, device_facts, device_id
from kamstrup382.outputs.power_topics import PowerTopics, power_configs, power_payload
from kamstrup382.pulses.live import PowerUpdate

from .helpers import reading
from .test_discovery import check_sensor_schema

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def update(**changes: object) -> PowerUpdate:
    fields: dict[str, object] = {
        "meter": "house",
        "at": AT,
        "watts": 2400.04,
        "bounded": False,
        "energy_kwh": Decimal("1234.5678"),
        "pulses": 12,
        "rejected": 1,
        "missed": 0,
        "drift_kwh": Decimal("0.25"),
        "pulse_at": AT,
        "connected": True,
        "report": True,
    }
    fields.update(changes)
    return PowerUpdate(**fields)  # type: ignore[arg-type]


def test_the_payload_rounds_the_energy_to_the_watt_hour() -> None:
    payload = json.loads(power_payload(update()))
    assert payload["power"] == 2400.0
    assert payload["pulse_energy"] == 1234.568
    assert payload["pulse_at"] == "2026-03-01T12:00:00.000Z"
    assert (payload["pulses"], payload["rejected"], payload["drift"]) == (12, 1, 0.25)
    unknown = json.loads(power_payload(update(watts=None, energy_kwh=None, drift_kwh=None)))
    assert unknown["power"] is None and unknown["pulse_energy"] is None


def test_the_sensors_join_the_meters_device() -> None:
    topics = PowerTopics(Topics("k", "ha"))
    facts = device_facts(reading("house"))
    ident = device_id(facts)  # the meter itself, as its device config names it
    assert ident is not None
    configs = dict(power_configs("house", facts, topics, "1.0", ident=ident))
    power = configs["ha/sensor/kamstrup382_house/power/config"]
    energy = configs["ha/sensor/kamstrup382_house/pulse_energy/config"]
    for topic, config in configs.items():
        check_sensor_schema(topic, config)
        assert config["state_topic"] == "k/house/power"
        assert config["device"]["identifiers"] == [ident]
        assert config["unique_id"].startswith(f"{ident}_")
        assert [a["topic"] for a in config["availability"]] == [
            "k/power_status",
            "k/house/pulse_availability",
        ]
    assert (power["unit_of_measurement"], power["state_class"]) == ("W", "measurement")
    assert (energy["unit_of_measurement"], energy["state_class"]) == ("kWh", "total_increasing")
