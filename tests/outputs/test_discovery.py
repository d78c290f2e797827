"""Device discovery payloads checked field by field against Home Assistant's MQTT schemas
(device discovery, sensor, binary sensor), and the state message checked against the reading
it carries.

The schema facts below are Home Assistant's documented ones (MQTT Sensor, MQTT Binary Sensor
and MQTT Discovery pages, "device discovery payload"; sensor device classes in
``homeassistant/components/sensor/const.py``), written out here so that the test fails when a
payload strays from them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import jsonschema
import pytest

from kamstrup382.documents import reading_schema
from kamstrup382.outputs.descriptions import HOME_ASSISTANT_STATUS, HomeAssistantEntity, Source
from kamstrup382.outputs.discovery import (
    ENTITIES,
    DeviceFacts,
    MeterSetup,
    Topics,
    check_topic_prefix,
    device_config,
    device_facts,
    device_id,
    expire_after,
    legacy_topics,
    node_id,
    readout_payload,
    state_json,
    state_payload,
    value_template,
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
#: An MQTT binary sensor's keys beyond those it shares with a sensor.
BINARY_SENSOR_KEYS = (
    SENSOR_KEYS - {"state_class", "suggested_display_precision", "unit_of_measurement",
                   "last_reset_value_template", "options"}
) | {"off_delay", "payload_on", "payload_off"}  # fmt: skip
BINARY_SENSOR_CLASSES = {"problem", "connectivity", "running", "power"}
#: The top level of a device discovery payload: device, origin, components, and the options
#: the components share (any component option may be shared; these are the ones we share).
DEVICE_PAYLOAD_KEYS = {
    "dev",
    "o",
    "cmps",
    "state_topic",
    "availability",
    "availability_mode",
    "qos",
}
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
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "current": {"A", "mA"},
    "timestamp": {None},
}
DEVICE_CLASS_STATE_CLASSES = {
    "energy": {"total", "total_increasing"},
    "power": {"measurement"},
    "duration": {"measurement", "total", "total_increasing"},
    "voltage": {"measurement"},
    "current": {"measurement"},
    "timestamp": {None},
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


FACTS = device_facts(reading("house", 3))
HOUSE = "kamstrup382_685-382-OK-15_00054042"
SETUP = MeterSetup("house", timedelta(minutes=15))


def check_component_schema(config: dict[str, Any]) -> None:
    """Fail unless ``config`` (a component with the shared options merged in, as Home
    Assistant merges them) is a valid MQTT sensor or binary sensor."""
    platform = config["platform"]
    assert platform in ("sensor", "binary_sensor")
    keys = SENSOR_KEYS if platform == "sensor" else BINARY_SENSOR_KEYS
    assert set(config) <= keys, f"unknown keys {set(config) - keys}"
    assert set(config) >= REQUIRED_SENSOR_KEYS
    for key in ("state_topic", "json_attributes_topic"):
        if key in config:
            assert isinstance(config[key], str) and config[key]
            assert not MQTT_WILDCARDS.search(config[key])
    assert isinstance(config["name"], str) and config["name"]
    assert isinstance(config["unique_id"], str) and TOPIC_ID.fullmatch(config["unique_id"])
    # availability: a list of maps with a topic, never together with availability_topic
    assert "availability_topic" not in config
    assert isinstance(config["availability"], list) and config["availability"]
    for entry in config["availability"]:
        assert set(entry) <= AVAILABILITY_KEYS and "topic" in entry
        assert not MQTT_WILDCARDS.search(entry["topic"])
    assert config.get("availability_mode", "latest") in AVAILABILITY_MODES
    device_class = config.get("device_class")
    if platform == "binary_sensor":
        assert device_class is None or device_class in BINARY_SENSOR_CLASSES
        assert isinstance(config["payload_on"], str) and isinstance(config["payload_off"], str)
    else:
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
    if "expire_after" in config:
        assert isinstance(config["expire_after"], int) and config["expire_after"] > 0
    if "entity_category" in config:
        assert config["entity_category"] in ENTITY_CATEGORIES_FOR_SENSORS
    if "icon" in config:
        assert re.fullmatch(r"mdi:[a-z0-9-]+", config["icon"])


def check_sensor_schema(topic: str, config: dict[str, Any]) -> None:
    """Fail unless ``config`` is a valid single-entity sensor discovery config on ``topic``
    (``<prefix>/sensor/<node>/<object>/config``, as the power output announces its sensors):
    the entity as a device's component would be, with a device block naming one identifier."""
    parts = topic.split("/")
    assert len(parts) == 5 and parts[1] == "sensor" and parts[4] == "config", topic
    assert TOPIC_ID.fullmatch(parts[2]) and TOPIC_ID.fullmatch(parts[3]), topic
    device = config["device"]
    assert set(device) <= DEVICE_KEYS and len(device["identifiers"]) == 1
    assert set(config["origin"]) <= ORIGIN_KEYS
    entity = {k: v for k, v in config.items() if k not in ("device", "origin")}
    check_component_schema({**entity, "platform": "sensor"})


def check_device_schema(topic: str, payload: dict[str, Any]) -> None:
    """Fail unless ``payload`` is a valid device discovery config published on ``topic``."""
    parts = topic.split("/")
    assert len(parts) == 4 and parts[1] == "device" and parts[3] == "config", topic
    assert TOPIC_ID.fullmatch(parts[2]), topic
    assert set(payload) <= DEVICE_PAYLOAD_KEYS, set(payload) - DEVICE_PAYLOAD_KEYS
    device = payload["dev"]
    assert set(device) <= DEVICE_KEYS
    assert device["identifiers"] == [parts[2]]
    for key in DEVICE_KEYS - {"identifiers", "connections", "via_device"}:
        if key in device:
            assert isinstance(device[key], str) and device[key], key
    if "configuration_url" in device:
        assert re.fullmatch(r"https?://[^\s]+", device["configuration_url"])
    origin = payload["o"]
    assert set(origin) <= ORIGIN_KEYS and isinstance(origin["name"], str)
    assert isinstance(origin["sw_version"], str) and origin["sw_version"]
    shared = {k: v for k, v in payload.items() if k not in ("dev", "o", "cmps")}
    assert payload["cmps"]
    unique_ids = set()
    for key, component in payload["cmps"].items():
        assert TOPIC_ID.fullmatch(key)
        check_component_schema({**shared, **component})
        unique_ids.add(component["unique_id"])
    assert len(unique_ids) == len(payload["cmps"])
    assert json.loads(json.dumps(payload)) == payload  # plain JSON


def house_config(**extra: Any) -> dict[str, Any]:
    return device_config(SETUP, FACTS, HOUSE, TOPICS, **extra)


def test_one_device_config_with_every_register_and_the_status_entities() -> None:
    config = house_config()
    check_device_schema(TOPICS.device(HOUSE), config)
    assert list(config["cmps"]) == [r.name for r in REGISTERS] + [
        "last_reading",
        "readout_failing",
    ]
    assert TOPICS.device(HOUSE) == f"homeassistant/device/{HOUSE}/config"


@pytest.mark.parametrize("register", [r.name for r in REGISTERS])
def test_classes_units_templates_and_expiry_per_register(register: str) -> None:
    config = house_config()
    component = {**config, **config["cmps"][register]}
    device_class, state_class, unit = EXPECTED[register]
    assert component.get("device_class") == device_class
    assert component.get("state_class") == state_class
    assert component.get("unit_of_measurement") == unit
    assert component["state_topic"] == "kamstrup382/house/state"
    assert component["unique_id"] == f"{HOUSE}_{register}"
    # the template picks this register out of the state message
    assert component["value_template"] == "{{ value_json.registers." + register + ".value }}"
    assert register in state_payload(reading("house", 3))["registers"]
    assert component["expire_after"] == 2250  # 2.5 intervals of 15 minutes
    assert component["availability"] == [
        {"topic": "kamstrup382/status", "payload_available": "online",
         "payload_not_available": "offline"},
        {"topic": "kamstrup382/house/availability", "payload_available": "online",
         "payload_not_available": "offline"},
    ]  # fmt: skip
    assert component["availability_mode"] == "all"


def test_expiry_follows_the_meters_interval() -> None:
    assert expire_after(timedelta(minutes=15)) == 2250
    assert expire_after(timedelta(hours=1)) == 9000
    assert expire_after(timedelta(seconds=7)) == 18  # rounded up
    assert expire_after(None) is None
    hourly = device_config(MeterSetup("house", timedelta(hours=1)), FACTS, HOUSE, TOPICS)
    assert hourly["cmps"]["energy"]["expire_after"] == 9000
    unknown = device_config(MeterSetup("house"), FACTS, HOUSE, TOPICS)
    assert "expire_after" not in unknown["cmps"]["energy"]


def test_last_reading_and_readout_failing_stay_available_while_the_meter_fails() -> None:
    config = house_config()
    last = {**config, **config["cmps"]["last_reading"]}
    assert last["platform"] == "sensor"
    assert last["device_class"] == "timestamp"
    assert last["state_topic"] == "kamstrup382/house/state"
    assert last["value_template"] == "{{ value_json.read_at }}"
    assert "expire_after" not in last
    assert [a["topic"] for a in last["availability"]] == ["kamstrup382/status"]
    failing = {**config, **config["cmps"]["readout_failing"]}
    assert failing["platform"] == "binary_sensor"
    assert failing["device_class"] == "problem"
    assert failing["state_topic"] == failing["json_attributes_topic"] == "kamstrup382/house/readout"
    assert failing["value_template"] == "{{ value_json.state }}"
    assert (failing["payload_on"], failing["payload_off"]) == ("failing", "ok")
    assert [a["topic"] for a in failing["availability"]] == ["kamstrup382/status"]
    # the state message has what the timestamp sensor reads, as ISO 8601 with a zone
    read_at = state_payload(reading("house", 3))["read_at"]
    assert datetime.fromisoformat(read_at).tzinfo is not None


def test_the_readout_message_says_failing_until_the_next_reading() -> None:
    t = datetime.fromisoformat("2026-03-01T10:00:02+00:00")
    ok = readout_payload(last_reading=t, last_error=None)
    assert ok == {
        "state": "ok",
        "last_reading_at": "2026-03-01T10:00:02Z",
        "last_error_at": None,
        "last_error_kind": None,
        "last_error": None,
    }
    later = t + timedelta(minutes=15)
    failing = readout_payload(
        last_reading=t, last_error=later, error_kind="timeout", error="no answer"
    )
    assert failing["state"] == "failing"
    assert failing["last_error"] == "no answer" and failing["last_error_kind"] == "timeout"
    assert failing["last_error_at"] == "2026-03-01T10:15:02Z"
    recovered = readout_payload(
        last_reading=later + timedelta(minutes=15), last_error=later, error="no answer"
    )
    assert recovered["state"] == "ok" and recovered["last_error"] == "no answer"
    assert readout_payload(last_reading=None, last_error=t)["state"] == "failing"


def test_every_value_template_comes_from_one_function() -> None:
    config = house_config()
    # a 685-382's entities: every register of its dialect, and the status
    shown = [e for e in ENTITIES if e.key in config["cmps"]]
    assert {e.key for e in ENTITIES} - {e.key for e in shown} == {"tariff_3", "tariff_4"}
    for entity in shown:
        assert config["cmps"][entity.key]["value_template"] == value_template(entity.field)
    # each field a template reads is in its message
    state = state_payload(reading("house", 3))
    readout = readout_payload(last_reading=None, last_error=None)
    for entity in shown:
        found: object = state if entity.source is Source.STATE else readout
        for part in entity.field.split("."):  # registers.energy.value: a path in the message
            assert isinstance(found, dict) and part in found, entity.key
            found = found[part]
    assert {e.key for e in HOME_ASSISTANT_STATUS} == {"last_reading", "readout_failing"}


def test_the_device_is_the_meter_and_its_name_only_the_name_shown() -> None:
    record = reading("house", 0, type_number="685-382-OK-15", customer_number="00054042")
    ident = device_id(device_facts(record))
    assert ident == HOUSE
    config = device_config(SETUP, device_facts(record), HOUSE, TOPICS)
    assert config["dev"] == {
        "identifiers": [HOUSE],
        "name": "house",
        "manufacturer": "Kamstrup",
        "model": "382 (3 phases, current code 8, class 2, module OK)",
        "model_id": "685-382-OK-15",
        "serial_number": "00054042",
    }
    # renamed: the same meter, the same device and unique ids; only the name shown changes
    renamed = device_config(
        MeterSetup("home", timedelta(minutes=15)), device_facts(record), HOUSE, TOPICS
    )
    assert renamed["dev"]["identifiers"] == [HOUSE] and renamed["dev"]["name"] == "home"
    assert [c["unique_id"] for c in renamed["cmps"].values()] == [
        c["unique_id"] for c in config["cmps"].values()
    ]
    assert renamed["state_topic"] == "kamstrup382/home/state"
    # another meter (another customer number or type) is another device
    other = device_facts(reading("garage", 0, customer_number="00000001"))
    assert device_id(other) == "kamstrup382_685-382-OK-15_00000001"
    single = device_facts(reading("garage", 0, type_number="685-192-SK-01"))
    assert device_id(single) == "kamstrup382_685-192-SK-01_00054042"
    garage = device_config(MeterSetup("garage"), single, "x", TOPICS)
    assert garage["dev"]["model"] == "382 (1 phase, current code 9, class 2, module SK)"


def test_a_unique_id_setting_names_the_device() -> None:
    assert device_id(FACTS, "house-main") == "kamstrup382_house-main"
    assert device_id(DeviceFacts(), "house-main") == "kamstrup382_house-main"
    # the config allows '.' and ':', Home Assistant ids do not: replaced, and told apart
    assert TOPIC_ID.fullmatch(device_id(DeviceFacts(), "a.b") or "")
    assert device_id(DeviceFacts(), "a.b") != device_id(DeviceFacts(), "a_b")
    # a meter without a unique_id that was never read has no identity yet
    assert device_id(DeviceFacts()) is None


def test_configuration_url_links_the_meters_dashboard_page() -> None:
    assert "configuration_url" not in house_config()["dev"]
    config = house_config(dashboard_url="https://k382.example/")
    assert config["dev"]["configuration_url"] == "https://k382.example/meters/house"
    odd = device_config(MeterSetup("flat:2"), FACTS, HOUSE, TOPICS, dashboard_url="http://h:8382")
    assert odd["dev"]["configuration_url"] == "http://h:8382/meters/flat%3A2"
    check_device_schema(TOPICS.device(HOUSE), config)


def test_origin_names_this_program() -> None:
    origin = house_config()["o"]
    assert origin["name"] == "kamstrup382"
    assert origin["sw_version"]


def test_the_per_entity_topics_of_earlier_versions() -> None:
    assert legacy_topics("house", TOPICS) == [
        f"homeassistant/sensor/kamstrup382_house/{r.name}/config" for r in REGISTERS
    ]
    assert legacy_topics("a.b", TOPICS)[0].startswith("homeassistant/sensor/kamstrup382_a_b_")


@pytest.mark.parametrize("meter", ["a.b", "flat:3", "x-1_y"])
def test_meter_names_become_valid_discovery_ids(meter: str) -> None:
    assert TOPIC_ID.fullmatch(node_id(meter))
    config = device_config(MeterSetup(meter), FACTS, HOUSE, TOPICS)
    check_device_schema(TOPICS.device(HOUSE), config)
    assert config["state_topic"] == f"kamstrup382/{meter}/state"


def test_custom_prefixes_reach_every_topic() -> None:
    topics = Topics("site7/meters", "ha")
    config = device_config(MeterSetup("m1"), FACTS, HOUSE, topics)
    assert topics.device(HOUSE) == f"ha/device/{HOUSE}/config"
    assert config["state_topic"] == "site7/meters/m1/state"
    assert [a["topic"] for a in config["availability"]] == [
        "site7/meters/status",
        "site7/meters/m1/availability",
    ]
    assert config["cmps"]["readout_failing"]["state_topic"] == "site7/meters/m1/readout"
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
    jsonschema.validate(json.loads(state_json(record)), reading_schema())  # docs/formats.md
    registers = message["registers"]
    assert registers["customer_number"]["value"] == values.customer_number == "00054042"
    for register in REGISTERS[1:]:
        entry = registers[register.name]
        assert (entry["code"], entry["unit"]) == (register.code, register.unit)
        assert Decimal(entry["value"]) == getattr(values, register.name), register.name
    plain = json.loads(state_json(record))["registers"]
    assert isinstance(plain["energy"]["value"], int)
    assert isinstance(plain["actual_peak"]["value"], float)
    assert datetime.fromisoformat(message["read_at"]) == record.read_at
    assert message["read_at"].endswith("+00:00")
    assert message["meter"] == "house"
    assert message["identification"]["type_number"]["text"] == "685-382-OK-15"
    assert message["identification"]["line"] == "KAM 685-382-OK-15"
    assert message["bcc"] == {"algorithm": "sum7"}
    assert message["timing"] == {
        "answer_delay_s": Decimal("0.05"),
        "duration_s": Decimal("6.55"),
        "attempts": 1,
    }


def test_state_numbers_keep_the_meters_digits() -> None:
    record = reading("house", 0, energy=9_999_999)
    text = state_json(record)
    assert '"energy": {"code": "1.20", "value": 9999999, "unit": "kWh"}' in text
    assert '"actual_peak": {"code": "1.6", "value": 18.3,' in text
    assert '"last_month_peak": {"code": "1.6*1", "value": 17.0,' in text
    assert '"customer_number": {"code": "0.0", "value": "00054042",' in text


def test_a_meter_may_bring_entities_of_its_own() -> None:
    power = HomeAssistantEntity(
        key="power",
        name="Power",
        field="power",
        device_class="power",
        state_class="measurement",
        unit="kW",
    )
    setup = MeterSetup("house", timedelta(minutes=15), entities=(power,))
    config = device_config(setup, FACTS, HOUSE, TOPICS)
    assert list(config["cmps"])[-1] == "power"
    assert config["cmps"]["power"]["unique_id"] == f"{HOUSE}_power"
    check_device_schema(TOPICS.device(HOUSE), config)


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
    facts = device_facts(record)
    ident = device_id(facts)
    assert ident is not None
    config = device_config(MeterSetup("c", timedelta(minutes=15)), facts, ident, TOPICS)
    check_device_schema(TOPICS.device(ident), config)
    registers = [key for key in config["cmps"] if key not in ("last_reading", "readout_failing")]
    assert registers == [r.name for r in KAMSTRUP_382C.registers]  # no last month's peak
    tariff_4 = config["cmps"]["tariff_4"]
    assert (tariff_4["device_class"], tariff_4["state_class"]) == ("energy", "total_increasing")
    assert tariff_4["unit_of_measurement"] == "kWh"
    assert config["dev"]["model"] == "382C (KAM 68438BC450000)"
    state = json.loads(state_json(record), parse_float=Decimal)
    jsonschema.validate(json.loads(state_json(record)), reading_schema())
    assert "last_month_peak" not in state["registers"]  # absent, not 0 and not null
    got = [state["registers"][n]["value"] for n in ("tariff_3", "tariff_4", "actual_peak")]
    assert got == [2, 1, Decimal("1.078")]
    assert state["registers"]["energy"]["code"] == "1.8.0"  # the 382C's own code
    # a 685-382 announces no tariffs 3 and 4, and its state has none
    plain = reading("house", 1)
    assert "tariff_3" not in json.loads(state_json(plain))["registers"]
    assert "tariff_3" not in house_config()["cmps"]
