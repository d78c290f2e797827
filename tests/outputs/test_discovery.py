"""Discovery payloads checked field by field against Home Assistant's MQTT sensor schema, and
the state message checked against the reading it carries.

The schema facts below are Home Assistant's documented ones (MQTT Sensor and MQTT Discovery
pages; sensor device classes in ``homeassistant/components/sensor/const.py``), written out
here so that the test fails when a payload strays from them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from kamstrup382.outputs.discovery import (
    DeviceFacts,
    Topics,
    check_topic_prefix,
    device_facts,
    discovery_configs,
    node_id,
    state_json,
    state_payload,
)
from kamstrup382.protocol import KAMSTRUP_382, KAMSTRUP_382C, MeterValues, decode_reply

from .helpers import reading

#: The meters of these tests are 685-382s: their registers.
REGISTERS = KAMSTRUP_382.registers

# -- Home Assistant's MQTT sensor schema (facts, not code) ------------------------------------
#: Every configuration variable of an MQTT sensor (full names; discovery also accepts
#: abbreviations, which we do not use) plus ``origin``, which discovery messages may carry.
SENSOR_KEYS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "default_entity_id",
    "device",
    "device_class",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "expire_after",
    "force_update",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "last_reset_value_template",
    "name",
    "object_id",
    "options",
    "origin",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "state_class",
    "state_topic",
    "suggested_display_precision",
    "unique_id",
    "unit_of_measurement",
    "value_template",
}
REQUIRED_SENSOR_KEYS = {"state_topic"}
#: Keys of the ``device`` map.
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
#: Keys of one entry of the ``availability`` list (``topic`` required).
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
AVAILABILITY_MODES = {"all", "any", "latest"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
ENTITY_CATEGORIES_FOR_SENSORS = {"diagnostic"}  # "config" is not allowed for sensors
#: Units allowed per device class, and the state classes each allows (the classes we use).
DEVICE_CLASS_UNITS = {
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal"},
    "power": {"W", "kW", "MW", "GW", "TW"},
    "duration": {"d", "h", "min", "s", "ms"},
}
DEVICE_CLASS_STATE_CLASSES = {
    "energy": {"total", "total_increasing"},
    "power": {"measurement"},
    "duration": {"measurement", "total", "total_increasing"},
}
#: node_id and object_id of ``<prefix>/<component>/[<node_id>/]<object_id>/config``
TOPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")
MQTT_WILDCARDS = re.compile(r"[#+]")

# -- what the issue asks per register ----------------------------------------------------------
EXPECTED = {
    "energy": ("energy", "total_increasing", "kWh"),
    "tariff_1": ("energy", "total_increasing", "kWh"),
    "tariff_2": ("energy", "total_increasing", "kWh"),
    "actual_peak": ("power", "measurement", "kW"),
    "last_month_peak": ("power", "measurement", "kW"),
    "hour_counter": ("duration", "total_increasing", "h"),
    "pulse_input": (None, "total_increasing", None),
    "customer_number": (None, None, None),
}

TOPICS = Topics("kamstrup382", "homeassistant")


def check_sensor_schema(topic: str, config: dict[str, Any]) -> None:
    """Fail unless ``config`` is a valid Home Assistant MQTT sensor discovery config."""
    assert set(config) <= SENSOR_KEYS, f"unknown keys {set(config) - SENSOR_KEYS}"
    assert set(config) >= REQUIRED_SENSOR_KEYS
    parts = topic.split("/")
    assert len(parts) == 5 and parts[1] == "sensor" and parts[4] == "config", topic
    assert TOPIC_ID.fullmatch(parts[2]) and TOPIC_ID.fullmatch(parts[3]), topic
    for key in ("state_topic",):
        assert isinstance(config[key], str) and config[key]
        assert not MQTT_WILDCARDS.search(config[key])
    assert isinstance(config["name"], str) and config["name"]
    assert isinstance(config["unique_id"], str) and config["unique_id"]
    # availability: a list of maps with a topic, never together with availability_topic
    assert "availability_topic" not in config
    assert isinstance(config["availability"], list) and config["availability"]
    for entry in config["availability"]:
        assert set(entry) <= AVAILABILITY_KEYS and "topic" in entry
        assert not MQTT_WILDCARDS.search(entry["topic"])
    assert config.get("availability_mode", "latest") in AVAILABILITY_MODES
    # device classes, units and state classes agree
    device_class = config.get("device_class")
    state_class = config.get("state_class")
    unit = config.get("unit_of_measurement")
    if state_class is not None:
        assert state_class in STATE_CLASSES
    if device_class is not None:
        assert unit in DEVICE_CLASS_UNITS[device_class]
        assert state_class in DEVICE_CLASS_STATE_CLASSES[device_class]
    if "suggested_display_precision" in config:
        assert isinstance(config["suggested_display_precision"], int)
        assert config["suggested_display_precision"] >= 0
    if "entity_category" in config:
        assert config["entity_category"] in ENTITY_CATEGORIES_FOR_SENSORS
    if "icon" in config:
        assert re.fullmatch(r"mdi:[a-z0-9-]+", config["icon"])
    # the device: identifiers (or connections) required, all strings
    device = config["device"]
    assert set(device) <= DEVICE_KEYS
    assert device.get("identifiers") or device.get("connections")
    assert all(isinstance(i, str) and i for i in device["identifiers"])
    for key in DEVICE_KEYS - {"identifiers", "connections", "via_device"}:
        if key in device:
            assert isinstance(device[key], str) and device[key], key
    origin = config["origin"]
    assert set(origin) <= ORIGIN_KEYS and isinstance(origin["name"], str)
    assert json.loads(json.dumps(config)) == config  # plain JSON


def test_every_register_gets_a_valid_sensor_config() -> None:
    record = reading("house", 3)
    configs = discovery_configs("house", device_facts(record), TOPICS)
    assert [topic.split("/")[3] for topic, _ in configs] == [r.name for r in REGISTERS]
    for topic, config in configs:
        check_sensor_schema(topic, config)


@pytest.mark.parametrize("register", [r.name for r in REGISTERS])
def test_classes_units_and_templates_per_register(register: str) -> None:
    record = reading("house", 3)
    configs = dict(discovery_configs("house", device_facts(record), TOPICS))
    config = configs[f"homeassistant/sensor/kamstrup382_house/{register}/config"]
    device_class, state_class, unit = EXPECTED[register]
    assert config.get("device_class") == device_class
    assert config.get("state_class") == state_class
    assert config.get("unit_of_measurement") == unit
    assert config["state_topic"] == "kamstrup382/house/state"
    assert config["unique_id"] == f"kamstrup382_house_{register}"
    # the template picks this register out of the state message
    assert config["value_template"] == "{{ value_json." + register + " }}"
    assert register in state_payload(record)
    assert config["availability"] == [
        {"topic": "kamstrup382/status", "payload_available": "online",
         "payload_not_available": "offline"},
        {"topic": "kamstrup382/house/availability", "payload_available": "online",
         "payload_not_available": "offline"},
    ]  # fmt: skip
    assert config["availability_mode"] == "all"


def test_one_device_per_meter_with_the_type_number_decoded() -> None:
    record = reading("house", 0, type_number="685-382-OK-15", customer_number="00054042")
    devices = [c["device"] for _, c in discovery_configs("house", device_facts(record), TOPICS)]
    assert all(d == devices[0] for d in devices)
    assert devices[0] == {
        "identifiers": ["kamstrup382_house"],
        "name": "house",
        "manufacturer": "Kamstrup",
        "model": "382 (3 phases, current code 8, class 2, module OK)",
        "model_id": "685-382-OK-15",
        "serial_number": "00054042",
    }
    single = reading("garage", 0, type_number="685-192-SK-01")
    device = discovery_configs("garage", device_facts(single), TOPICS)[0][1]["device"]
    assert device["model"] == "382 (1 phase, current code 9, class 2, module SK)"
    assert device["identifiers"] == ["kamstrup382_garage"]


def test_a_meter_not_read_yet_gets_a_minimal_device() -> None:
    configs = discovery_configs("house", DeviceFacts(), TOPICS)
    for topic, config in configs:
        check_sensor_schema(topic, config)
        assert config["device"] == {
            "identifiers": ["kamstrup382_house"],
            "name": "house",
            "manufacturer": "Kamstrup",
            "model": "382",
        }


def test_unique_ids_are_stable_and_distinct() -> None:
    first = discovery_configs("house", device_facts(reading("house", 0)), TOPICS)
    later = discovery_configs(
        "house", device_facts(reading("house", 9, customer_number="00000001")), TOPICS
    )
    assert [c["unique_id"] for _, c in first] == [c["unique_id"] for _, c in later]
    ids = [
        c["unique_id"]
        for meter in ("house", "a.b", "a_b", "a:b")
        for _, c in discovery_configs(meter, DeviceFacts(), TOPICS)
    ]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("meter", ["a.b", "flat:3", "x-1_y"])
def test_meter_names_become_valid_discovery_ids(meter: str) -> None:
    ident = node_id(meter)
    assert TOPIC_ID.fullmatch(ident)
    for topic, config in discovery_configs(meter, DeviceFacts(), TOPICS):
        check_sensor_schema(topic, config)
        assert config["state_topic"] == f"kamstrup382/{meter}/state"


def test_custom_prefixes_reach_every_topic() -> None:
    topics = Topics("site7/meters", "ha")
    topic, config = discovery_configs("m1", DeviceFacts(), topics)[1]
    assert topic == "ha/sensor/kamstrup382_m1/energy/config"
    assert config["state_topic"] == "site7/meters/m1/state"
    assert [a["topic"] for a in config["availability"]] == [
        "site7/meters/status",
        "site7/meters/m1/availability",
    ]
    assert topics.ha_status == "ha/status"


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("kamstrup382", True),
        ("site/a", True),
        ("", False),
        ("a/#", False),
        ("a/+/b", False),
        ("/a", False),
        ("a/", False),
        ("a//b", False),
        ("$SYS", False),
    ],
)
def test_topic_prefix_rules(prefix: str, ok: bool) -> None:
    assert (check_topic_prefix(prefix) is None) is ok


def test_state_message_carries_the_reading_exactly() -> None:
    record = reading("house", 5)
    message = json.loads(state_json(record), parse_float=Decimal)
    telegram = decode_reply(record.raw)
    values = telegram.meter_values()
    assert message["customer_number"] == values.customer_number == "00054042"
    for register in REGISTERS[1:]:
        assert Decimal(message[register.name]) == getattr(values, register.name), register.name
    assert isinstance(json.loads(state_json(record))["energy"], int)
    assert isinstance(json.loads(state_json(record))["actual_peak"], float)
    assert datetime.fromisoformat(message["read_at"]) == record.read_at
    assert message["read_at"].endswith("Z")
    assert message["meter"] == "house"
    assert message["type_number"] == "685-382-OK-15"
    assert message["identification"] == "KAM 685-382-OK-15"
    assert message["bcc_algorithm"] == "sum7"
    assert message["timing"] == {
        "answer_delay_s": Decimal("0.05"),
        "duration_s": Decimal("6.55"),
        "attempts": 1,
    }


def test_state_numbers_keep_the_meters_digits() -> None:
    record = reading("house", 0, energy=9_999_999)
    text = state_json(record)
    assert '"energy":9999999' in text
    assert '"actual_peak":18.3' in text
    assert '"last_month_peak":17.0' in text
    assert '"customer_number":"00054042"' in text


def test_a_382c_announces_its_own_registers_and_sends_none_it_lacks() -> None:
    values = MeterValues(
        customer_number="14410000",
        energy=Decimal(36886),
        tariff_1=Decimal(36880),
        tariff_2=Decimal(3),
        tariff_3=Decimal(2),
        tariff_4=Decimal(1),
        hour_counter=Decimal(119899),
        pulse_input=Decimal(0),
        actual_peak=Decimal("1.078"),
        last_month_peak=None,
    )
    record = replace(
        reading("c", 0),
        values=values,
        identification="KAM 68438BC450000",
        type_number=None,
    )
    configs = dict(discovery_configs("c", device_facts(record), TOPICS))
    names = [topic.split("/")[3] for topic in configs]
    assert names == [r.name for r in KAMSTRUP_382C.registers]  # no last month's peak
    for topic, config in configs.items():
        check_sensor_schema(topic, config)
    tariff_4 = configs["homeassistant/sensor/kamstrup382_c/tariff_4/config"]
    assert (tariff_4["device_class"], tariff_4["state_class"]) == ("energy", "total_increasing")
    assert tariff_4["unit_of_measurement"] == "kWh"
    assert tariff_4["device"]["model"] == "382C (KAM 68438BC450000)"
    state = json.loads(state_json(record), parse_float=Decimal)
    assert "last_month_peak" not in state  # absent, not 0 and not null
    assert (state["tariff_3"], state["tariff_4"], state["actual_peak"]) == (2, 1, Decimal("1.078"))
    # a 685-382 announces no tariffs 3 and 4, and its state has none
    plain = reading("house", 1)
    assert "tariff_3" not in json.loads(state_json(plain))
    assert not any(
        "tariff_3" in t for t, _ in discovery_configs("house", device_facts(plain), TOPICS)
    )
