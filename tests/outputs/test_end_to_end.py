"""The whole path: emulated meters over TCP -> collector -> storage -> MQTT and Prometheus,
configured from one TOML document, with a broker outage of several cycles in the middle."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.collector.config import parse_config
from kamstrup382.emulator import EmulatorThread
from kamstrup382.outputs import build_outputs
from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.outputs.prometheus import PrometheusOutput
from kamstrup382.protocol import KAMSTRUP_382
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import Gate, Received, Watcher
from .scrape import scrape, value
from .test_discovery import check_device_schema
from .test_mqtt import drained, live_states, outage, recover

#: The meters of these tests are 685-382s: their registers.
REGISTERS = KAMSTRUP_382.registers

pytestmark = pytest.mark.mosquitto

SPEED = 200.0
METERS = 3


def toml(storage: str, ports: list[str], mqtt_url: str) -> str:
    meters = "\n".join(
        f'[[meters]]\nname = "m{index}"\nport = "{port}"' for index, port in enumerate(ports)
    )
    return f"""
[storage]
url = "{storage}"

[collector]
interval = "15m"
flush_interval = 0.05
answer_timeout = 0.5
backoff = 0.05

[mqtt]
url = "{mqtt_url}"
client_id = "k382-e2e"
reconnect_delay = 0.05
reconnect_max = 0.2

[prometheus]
listen = "127.0.0.1:0"

{meters}
"""


async def test_meters_to_home_assistant_and_prometheus_through_an_outage(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    clock = ManualClock(datetime(2026, 3, 1, 10, 1, tzinfo=UTC))
    async with (
        Watcher(mosquitto.host, mosquitto.port, ["kamstrup382/#", "homeassistant/#"]) as watcher,
        Gate(mosquitto.host, mosquitto.port) as gate,
    ):
        with EmulatorThread(meters=METERS, transport="tcp", speed=SPEED, delay=0.02) as emu:
            config = parse_config(tomllib.loads(toml(url, emu.ports, gate.url)), env={})
            outputs = build_outputs(config.sections, config.meters)
            mqtt, prometheus = outputs
            assert isinstance(mqtt, MqttOutput) and isinstance(prometheus, PrometheusOutput)
            with open_storage(url) as storage:
                async with Collector(config, storage, outputs, clock=clock) as collector:
                    assert (await collector.run_once()).ok
                    await watcher.wait_for(lambda ms: len(live_states(ms)) >= METERS)
                    await drained(storage)
                    await outage(mosquitto, gate)
                    for _ in range(3):  # the collector goes on reading meanwhile
                        clock.advance(timedelta(minutes=15))
                        assert (await collector.run_once()).ok
                    assert len(storage.outbox_pending(1000)) == 3 * METERS
                    await recover(mosquitto, gate, watcher)
                    clock.advance(timedelta(minutes=15))
                    assert (await collector.run_once()).ok
                    await watcher.wait_for(lambda ms: len(live_states(ms)) >= 5 * METERS)
                    families = await scrape(prometheus)
                stored = {m.name: list(storage.readings(m.name)) for m in config.meters}
                assert storage.outbox_pending() == []
            sent = [emu.sent_values(i) for i in range(METERS)]
        # the collector said goodbye on the status topic when it closed
        await watcher.wait_for(
            lambda ms: any(m.topic == "kamstrup382/status" and m.text == "offline" for m in ms)
        )

    for index in range(METERS):
        meter = f"m{index}"
        readings = stored[meter]
        assert len(readings) == 5
        # what the meter said, stored (its first reading heard in three requests)
        assert sent[index][0] == sent[index][1] == sent[index][2]
        assert [r.values for r in readings] == sent[index][2:]
        states = [m.json() for m in live_states(watcher.messages, meter)]
        # every reading published once, in order, carrying the stored values
        assert [s["read_at"] for s in states] == [r.read_at.isoformat() for r in readings]
        for state, record in zip(states, readings, strict=True):
            registers = state["registers"]
            assert registers["customer_number"]["value"] == record.values.customer_number
            for register in REGISTERS[1:]:
                got = registers[register.name]["value"]
                assert str(got) == str(getattr(record.values, register.name))
        # Prometheus shows the newest reading
        latest = readings[-1]
        _, energy = families["kamstrup382_energy_kwh"]
        assert value(energy, "kamstrup382_energy_kwh_total", meter=meter) == float(
            latest.values.energy
        )
        _, durations = families["kamstrup382_readout_duration_seconds"]
        assert value(durations, "kamstrup382_readout_duration_seconds_count", meter=meter) == 5

    # Home Assistant sees one valid device per meter, keyed on the meter (type number and
    # customer number), named as configured, expiring after 2.5 intervals of 15 minutes
    configs = {
        m.topic: json.loads(m.payload)
        for m in watcher.messages
        if m.topic.startswith("homeassistant/device/") and m.payload
    }
    assert len(configs) == METERS
    for topic, payload in configs.items():
        check_device_schema(topic, payload)
    newest = stored["m0"][-1]
    ident = f"kamstrup382_{newest.type_number}_{newest.values.customer_number}"
    device = configs[f"homeassistant/device/{ident}/config"]
    assert device["dev"]["name"] == "m0"
    assert device["dev"]["model_id"] == newest.type_number
    assert device["dev"]["serial_number"] == newest.values.customer_number
    assert device["dev"]["manufacturer"] == "Kamstrup"
    assert device["cmps"]["energy"]["expire_after"] == 2250
    assert [m.text for m in watcher.on("kamstrup382/status") if not m.retain][-1] == "offline"


async def run_collect(config: Path, *args: str) -> tuple[int, str]:
    """``k382 collect --config CONFIG ARGS`` as a process; (exit status, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kamstrup382",
        "collect",
        "--config",
        str(config),
        *args,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_k382_collect_once_publishes_and_exits(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    config = tmp_path / "k382.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "r.sqlite"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n[prometheus]\nlisten = "127.0.0.1:0"\n'
    )
    async with Watcher(mosquitto.host, mosquitto.port, ["kamstrup382/#"]) as watcher:
        status, err = await run_collect(config, "--emulator", "2", "--speed", "100", "--once")
        assert status == 0, err
        states = await watcher.wait_for(lambda ms: len(live_states(ms)) >= 2)
        await watcher.wait_for(
            lambda ms: (
                [m.text for m in ms if m.topic == "kamstrup382/status"] == ["online", "offline"]
            )
        )
    meters = sorted(m.topic for m in live_states(states))
    assert meters == ["kamstrup382/emulated-1/state", "kamstrup382/emulated-2/state"]
    with open_storage(f"sqlite:///{tmp_path / 'r.sqlite'}") as storage:
        assert storage.outbox_pending() == []
        assert len(list(storage.readings())) == 2


async def test_k382_collect_once_without_a_broker_keeps_the_readings(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The broker down: the meters are still read (exit 0), and the readings wait in the
    outbox for the next run, which publishes them first."""
    config = tmp_path / "k382.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "r.sqlite"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\nreconnect_delay = 0.05\n'
    )
    await asyncio.to_thread(mosquitto.stop)
    status, err = await run_collect(config, "--emulator", "1", "--speed", "100", "--once")
    assert status == 0, err
    assert "unreachable" in err
    with open_storage(f"sqlite:///{tmp_path / 'r.sqlite'}") as storage:
        (waiting,) = [record for _, record in storage.outbox_pending()]
    await asyncio.to_thread(mosquitto.start)
    async with Watcher(mosquitto.host, mosquitto.port, ["kamstrup382/#"]) as watcher:
        status, err = await run_collect(config, "--emulator", "1", "--speed", "100", "--once")
        assert status == 0, err
        states = await watcher.wait_for(lambda ms: len(live_states(ms)) >= 1)
    read_at = [m.json()["read_at"] for m in live_states(states)]
    assert read_at[0] == waiting.read_at.isoformat()
    with open_storage(f"sqlite:///{tmp_path / 'r.sqlite'}") as storage:
        assert storage.outbox_pending() == []


async def test_k382_collect_announces_devices_and_clears_a_meter_no_longer_configured(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Two emulated meters, then one: the second's device leaves Home Assistant at the next
    run; the first keeps its device, linked to the dashboard's public address."""
    config = tmp_path / "k382.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "r.sqlite"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n'
        '[http]\nlisten = "127.0.0.1:0"\npublic_url = "https://k382.example/"\n'
    )
    async with Watcher(mosquitto.host, mosquitto.port, ["homeassistant/#"]) as watcher:
        status, err = await run_collect(config, "--emulator", "2", "--speed", "100", "--once")
        assert status == 0, err

        def announced(ms: list[Received]) -> list[Received]:
            return [m for m in ms if m.topic.startswith("homeassistant/device/") and m.payload]

        await watcher.wait_for(lambda ms: len({m.topic for m in announced(ms)}) >= 2)
        devices = {m.topic: m.json() for m in announced(watcher.messages)}
        assert len(devices) == 2
        by_name = {config["dev"]["name"]: topic for topic, config in devices.items()}
        first, second = by_name["emulated-1"], by_name["emulated-2"]
        assert devices[first]["dev"]["configuration_url"] == (
            "https://k382.example/meters/emulated-1"
        )
        status, err = await run_collect(config, "--emulator", "1", "--speed", "100", "--once")
        assert status == 0, err
        await watcher.wait_for(lambda ms: any(m.topic == second and not m.payload for m in ms))
    assert all(m.payload for m in watcher.on(first))
