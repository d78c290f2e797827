"""A KMP meter (382J, 382Jx3, 382Lx7, 382M) as Home Assistant sees it: its state message (the
one shape of a reading, ``"protocol": "kmp"``) and its device config, checked against Home
Assistant's MQTT schemas as the mode A meter's are (:mod:`.test_discovery`)."""

from __future__ import annotations

import json
import tomllib
from datetime import timedelta
from decimal import Decimal

import jsonschema
import pytest

from kamstrup382.collector.config import parse_config
from kamstrup382.documents import reading_schema
from kamstrup382.outputs.discovery import (
    MeterSetup,
    Topics,
    device_config,
    device_facts,
    device_id,
    state_json,
)
from kamstrup382.outputs.ha_devices import Devices
from kamstrup382.protocol.kmp import KMP_382_REGISTERS, KMP_REGISTER_BY_NAME

from .helpers import kmp_reading, reading
from .test_discovery import check_device_schema

TOPICS = Topics("kamstrup382", "homeassistant")
FLAT = "kamstrup382_kmp_0382_54042"
SETUP = MeterSetup("flat", timedelta(minutes=15), protocol="kmp")
STATUS = ["last_reading", "readout_failing"]

#: What the brief asks per KMP register: device class, state class, unit.
EXPECTED = {
    **dict.fromkeys(
        ["energy", "energy_out", "energy_hires", "energy_out_hires"],
        ("energy", "total_increasing", "kWh"),
    ),
    **dict.fromkeys(
        ["power", "power_out", "max_power", "power_l1", "power_l2", "power_l3"],
        ("power", "measurement", "W"),
    ),
    **dict.fromkeys(["voltage_l1", "voltage_l2", "voltage_l3"], ("voltage", "measurement", "V")),
    **dict.fromkeys(["current_l1", "current_l2", "current_l3"], ("current", "measurement", "A")),
}


def test_every_kmp_register_is_described() -> None:
    assert set(EXPECTED) == {r.name for r in KMP_382_REGISTERS}


def test_a_kmp_state_message_is_the_one_shape_with_the_values_exact() -> None:
    record = kmp_reading("flat", 4, leave_out=("energy_out_hires",))
    text = state_json(record)
    jsonschema.validate(json.loads(text), reading_schema())  # docs/formats.md
    message = json.loads(text, parse_float=Decimal)
    assert message["protocol"] == "kmp"
    assert message["meter_identity"] == {
        "meter_type": "0x0382",
        "software_revision": "A1",
        "serial": 54042,
    }
    registers = message["registers"]
    assert "energy_out_hires" not in registers  # not sent: absent, never 0 or null
    assert set(registers) == set(record.values)
    for name, value in record.values.items():
        entry = registers[name]
        assert entry["code"] == f"0x{KMP_REGISTER_BY_NAME[name].id:04x}"
        assert entry["unit"] == KMP_REGISTER_BY_NAME[name].unit
        assert Decimal(str(entry["value"])) == value, name
    assert '"energy_hires": {"code": "0x000d", "value": 1238.56, "unit": "kWh"}' in text


def test_a_kmp_meters_device_has_its_registers_classes_and_identity() -> None:
    facts = device_facts(kmp_reading("flat", 1))
    ident = device_id(facts)
    assert ident == FLAT
    config = device_config(SETUP, facts, FLAT, TOPICS)
    check_device_schema(TOPICS.device(FLAT), config)
    assert list(config["cmps"]) == [r.name for r in KMP_382_REGISTERS] + STATUS
    assert config["dev"] == {
        "identifiers": [FLAT],
        "name": "flat",
        "manufacturer": "Kamstrup",
        "model": "382 (KMP, meter type 0x0382)",
        "model_id": "0x0382",
        "serial_number": "54042",
        "sw_version": "A1",
    }
    state = json.loads(state_json(kmp_reading("flat", 1)))
    for name, (device_class, state_class, unit) in EXPECTED.items():
        component = {**config, **config["cmps"][name]}
        got = (
            component.get("device_class"),
            component["state_class"],
            component["unit_of_measurement"],
        )
        assert got == (device_class, state_class, unit), name
        assert component["unique_id"] == f"{FLAT}_{name}"
        assert component["value_template"] == "{{ value_json.registers." + name + ".value }}"
        assert name in state["registers"]  # the template finds its value
        assert component["state_topic"] == "kamstrup382/flat/state"
        assert component["expire_after"] == 2250  # as a mode A meter's: 2.5 intervals
        assert [a["topic"] for a in component["availability"]] == [
            "kamstrup382/status",
            "kamstrup382/flat/availability",
        ]
    # the status entities as a mode A meter's: available while the meter fails
    failing = config["cmps"]["readout_failing"]
    assert failing["state_topic"] == "kamstrup382/flat/readout"
    assert [a["topic"] for a in failing["availability"]] == ["kamstrup382/status"]
    names = {config["cmps"][n]["name"] for n in ("voltage_l2", "current_l3", "power_l1")}
    assert names == {"Voltage L2", "Current L3", "Power L1"}


def test_the_configured_register_set_decides_the_entities() -> None:
    setup = MeterSetup("flat", protocol="kmp", kmp_registers=("power", "energy", "voltage_l1"))
    everything = device_facts(kmp_reading("flat", 1))
    config = device_config(setup, everything, FLAT, TOPICS)
    assert list(config["cmps"]) == ["energy", "power", "voltage_l1", *STATUS]  # table order
    # announced before its first reading (a unique_id): the configured set already
    config = device_config(setup, device_facts(None), "kamstrup382_flat", TOPICS)
    assert list(config["cmps"]) == ["energy", "power", "voltage_l1", *STATUS]
    assert config["dev"]["model"] == "382"  # nothing known of the meter yet


def test_without_a_configured_set_the_registers_the_readings_carry() -> None:
    facts = device_facts(kmp_reading("flat", 1, leave_out=("energy_out", "energy_out_hires")))
    config = device_config(MeterSetup("flat"), facts, FLAT, TOPICS)
    assert "energy_out" not in config["cmps"] and "energy_out_hires" not in config["cmps"]
    assert "power_out" in config["cmps"]


def test_the_collectors_meter_config_gives_protocol_and_registers() -> None:
    config = parse_config(
        tomllib.loads(
            """
            [storage]
            url = "sqlite:///x.sqlite"
            [[meters]]
            name = "flat"
            port = "socket://127.0.0.1:1"
            protocol = "kmp"
            registers = ["energy", "power_l2", "current_l2"]
            [[meters]]
            name = "house"
            port = "socket://127.0.0.1:2"
            """
        ),
        env={},
    )
    flat, house = (MeterSetup.of(meter) for meter in config.meters)
    assert (flat.protocol, flat.kmp_registers) == ("kmp", ("energy", "power_l2", "current_l2"))
    assert (house.protocol, house.kmp_registers) == ("iec", None)
    cmps = device_config(flat, device_facts(kmp_reading("flat")), FLAT, TOPICS)["cmps"]
    assert list(cmps) == ["energy", "current_l2", "power_l2", *STATUS]


def test_a_kmp_meter_and_a_mode_a_meter_are_distinct_devices_and_keep_them_on_rename() -> None:
    devices = Devices(TOPICS, [SETUP, MeterSetup("house", timedelta(minutes=15))])
    devices.update("flat", device_facts(kmp_reading("flat")))
    devices.update("house", device_facts(reading("house")))
    assert devices.ids() == {"flat": FLAT, "house": "kamstrup382_685-382-OK-15_00054042"}
    # another serial, another device; the same meter renamed, the same device
    other = device_facts(kmp_reading("flat", serial=7))
    assert device_id(other) == "kamstrup382_kmp_0382_7"
    renamed = Devices(TOPICS, [MeterSetup("kitchen", protocol="kmp")])
    renamed.update("kitchen", device_facts(kmp_reading("kitchen")))
    assert renamed.ids() == {"kitchen": FLAT}
    # a unique_id wins, as for a mode A meter
    assert device_id(device_facts(kmp_reading()), "flat-meter") == "kamstrup382_flat-meter"


@pytest.mark.parametrize("meter_type", [0x0001, 0x0382, 0xFFFF])
def test_the_device_id_spells_the_meter_type_in_four_hex_digits(meter_type: int) -> None:
    facts = device_facts(kmp_reading(meter_type=meter_type, serial=12))
    assert device_id(facts) == f"kamstrup382_kmp_{meter_type:04x}_12"


def test_an_auto_meter_has_no_registers_until_its_first_reading_says_which() -> None:
    auto = MeterSetup("flat", protocol="auto", kmp_registers=("energy", "power"))
    config = device_config(auto, device_facts(None), "kamstrup382_flat", TOPICS)
    assert list(config["cmps"]) == STATUS
    as_kmp = device_config(auto, device_facts(kmp_reading()), FLAT, TOPICS)
    assert list(as_kmp["cmps"]) == ["energy", "power", *STATUS]
    as_mode_a = device_config(auto, device_facts(reading("flat")), "x", TOPICS)
    assert "tariff_1" in as_mode_a["cmps"] and "power" not in as_mode_a["cmps"]
