"""Live power end to end on loopback: an emulated meter's pulse-out over TCP (as ``k382 emulate
--pulse-listen`` serves it), a collector with ``pulses = "tcp://..."``, Prometheus and Home
Assistant (a real mosquitto) showing the power; a load step, a load to zero, a restart of the
pulse source. Real time: the pulses come at the meter's true pace (1000 imp/kWh)."""

from __future__ import annotations

import asyncio
import time
import tomllib
import urllib.request
from collections.abc import Callable
from dataclasses import replace as replaced
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kamstrup382.collector import Collector
from kamstrup382.collector.config import parse_config
from kamstrup382.collector.pulse_inputs import PulseInputs
from kamstrup382.emulator import Emulator
from kamstrup382.emulator.load import parse_load
from kamstrup382.emulator.pulse_server import PulseServer
from kamstrup382.errors import ConfigError
from kamstrup382.outputs import build_outputs
from kamstrup382.outputs.power import PowerMqttOutput
from kamstrup382.outputs.power_metrics import PowerMetrics
from kamstrup382.outputs.prometheus import PrometheusOutput
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker
from tests.outputs.helpers import Received, Watcher, reading

POWER_TOPIC = "kamstrup382/house/power"


def toml(storage: str, port: str, pulses: str, broker: str) -> str:
    return f"""
[storage]
url = "{storage}"

[collector]
flush_interval = 0.05
answer_timeout = 0.5

[mqtt]
url = "{broker}"
client_id = "k382-pulses"
reconnect_delay = 0.05
reconnect_max = 0.2

[prometheus]
listen = "127.0.0.1:0"

[[meters]]
name = "house"
port = "{port}"
pulses = "{pulses}"
pulse_constant = 1000
pulse_zero_after = "4s"
power_interval = "5s"
"""


async def scraped_watts(prometheus: PrometheusOutput) -> dict[str, float]:
    def get() -> str:
        with urllib.request.urlopen(prometheus.url, timeout=30) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(get)
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("meter") == "house"
    }


async def until(condition: Callable[[], object], within: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took (fails after ``within``)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def powers(messages: list[Received]) -> list[float | None]:
    return [m.json()["power"] for m in messages if m.topic == POWER_TOPIC]


@pytest.mark.mosquitto
async def test_live_power_to_prometheus_and_home_assistant(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    async with (
        Watcher(mosquitto.host, mosquitto.port, ["kamstrup382/#", "homeassistant/#"]) as watcher,
        Emulator(1, transport="tcp", speed=50, load=parse_load("constant:2.4")) as emulator,
    ):
        server = PulseServer(emulator.subscribe_pulses, 1, "127.0.0.1", 0)
        await server.start()
        pulses_url = server.ports[0]
        pulse_port = int(pulses_url.rsplit(":", 1)[1])
        text = toml(url, emulator.ports[0], pulses_url, mosquitto.url)
        config = parse_config(tomllib.loads(text), env={})
        outputs = build_outputs(config.sections, ["house"], module=True)
        prometheus = next(o for o in outputs if isinstance(o, PrometheusOutput))
        assert any(isinstance(o, PowerMqttOutput) for o in outputs)
        assert any(isinstance(o, PowerMetrics) for o in outputs)
        with open_storage(url) as storage:
            async with Collector(config, storage, outputs) as collector:
                assert (await collector.run_once()).ok  # the register: the precise energy
                live = collector.pulse_inputs.live["house"]

                # 2.4 kW: within 15 s on Prometheus and on the broker, within 1 %
                metrics: dict[str, float] = {}

                async def prometheus_reads(watts: float) -> bool:
                    metrics.update(await scraped_watts(prometheus))
                    return (
                        abs(metrics.get("kamstrup382_pulse_power_watts", 0) - watts) <= watts / 100
                    )

                started = time.monotonic()
                while not await prometheus_reads(2400):
                    assert time.monotonic() - started < 15, metrics
                    await asyncio.sleep(0.2)
                await until(
                    lambda: any(
                        p is not None and abs(p - 2400) <= 24 for p in powers(watcher.messages)
                    ),
                    15 - (time.monotonic() - started),
                    "the HA power sensor at 2,400 W",
                )
                configs = {
                    m.topic: m.json()
                    for m in watcher.messages
                    if m.topic.endswith("config") and m.payload  # not the clearing of old ones
                }
                power_config = configs["homeassistant/sensor/kamstrup382_house/power/config"]
                assert power_config["state_topic"] == POWER_TOPIC
                assert (power_config["device_class"], power_config["state_class"]) == (
                    "power",
                    "measurement",
                )
                assert power_config["unit_of_measurement"] == "W"
                energy_config = configs[
                    "homeassistant/sensor/kamstrup382_house/pulse_energy/config"
                ]
                assert energy_config["state_class"] == "total_increasing"
                assert energy_config["suggested_display_precision"] == 3
                # the meter's own device: the one its device config announces
                (ident,) = power_config["device"]["identifiers"]
                assert ident == "kamstrup382_685-382-OK-15_00054042"
                assert f"homeassistant/device/{ident}/config" in configs
                last = [m.json() for m in watcher.messages if m.topic == POWER_TOPIC][-1]
                register = float(storage.latest("house").values.energy)  # type: ignore[union-attr]
                assert register <= last["pulse_energy"] < register + 1

                # a step to 5 kW shows within two pulses (0.72 s each)
                before = live.estimate.pulses
                emulator.models[0].load = parse_load("constant:5")
                await until(
                    lambda: (
                        live.power(time.monotonic_ns()).watts is not None
                        and abs(live.power(time.monotonic_ns()).watts - 5000) <= 50  # type: ignore[operator]
                    ),
                    10,
                    "5 kW after the step",
                )
                assert live.estimate.pulses - before <= 2
                await until(
                    lambda: any(
                        p is not None and abs(p - 5000) <= 50 for p in powers(watcher.messages)
                    ),
                    5,
                    "the HA power sensor at 5 kW",
                )

                # the pulse source restarts: the input reconnects, the count goes on
                source = collector.pulse_inputs.sources["house"]
                counted = live.estimate.pulses
                await server.close()
                await until(lambda: not source.connected, 5, "the source seen gone")
                server = PulseServer(emulator.subscribe_pulses, 1, "127.0.0.1", pulse_port)
                await server.start()
                await until(lambda: source.connected, 10, "the source reconnected")
                await until(lambda: live.estimate.pulses >= counted + 3, 10, "pulses again")
                assert source.connects == 2  # type: ignore[attr-defined]
                metrics.update(await scraped_watts(prometheus))
                assert metrics["kamstrup382_pulses_total"] >= counted + 3

                # load to zero: the bound falls, then 0 after pulse_zero_after
                emulator.models[0].load = parse_load("constant:0")
                await until(lambda: live.power(time.monotonic_ns()).bounded, 5, "bounded")
                bound = live.power(time.monotonic_ns()).watts
                assert bound is not None and bound < 5000
                await until(lambda: live.power(time.monotonic_ns()).watts == 0, 8, "0 W")
                await until(lambda: 0.0 in powers(watcher.messages), 5, "HA at 0 W")
                metrics.update(await scraped_watts(prometheus))
                assert metrics["kamstrup382_pulse_power_watts"] == 0
                await until(
                    lambda: [p.watts for p in storage.live_power()] == [0.0],
                    5,
                    "the live figure stored",
                )
                (stored,) = storage.live_power()
                assert stored.meter == "house" and stored.pulses == live.estimate.pulses
                assert metrics["kamstrup382_pulses_rejected_total"] == 0
        await server.close()
    received = powers(watcher.messages)
    assert received[-1] == 0.0


async def test_a_gpio_input_without_its_extra_or_chip_stops_the_start_naming_the_key() -> None:
    config = parse_config(
        {
            "meters": [
                {"name": "a", "port": "socket://127.0.0.1:1"},
                {"name": "b", "port": "socket://127.0.0.1:2", "pulses": "gpio:/dev/nochip9:17"},
            ]
        },
        env={},
    )
    inputs = PulseInputs(config.meters, [])
    with pytest.raises(ConfigError) as caught:
        await inputs.start()
    assert caught.value.key == "meters[1].pulses"
    assert "gpio" in str(caught.value)  # the extra to install, or the chip that is missing
    assert "/dev/nochip9" in str(caught.value) or "pip install" in str(caught.value)
    await inputs.close()


def test_a_drift_beyond_rounding_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(
        {"meters": [{"name": "house", "port": "socket://127.0.0.1:1", "pulses": "tcp://h:1"}]},
        env={},
    )
    inputs = PulseInputs(config.meters, [])
    live = inputs.live["house"]
    first = reading("house", 0, energy=100)
    inputs.readout(first)
    ns = 1_000_000_000
    start = int(first.read_at.timestamp()) * ns + ns
    for i in range(500):  # 0.5 kWh counted
        at = start + i * ns
        live.pulse(at, 1, mono_ns=at, wall_ns=at)
    later = first.read_at + timedelta(hours=1)
    values = replaced(first.values, energy=Decimal(100))
    with caplog.at_level("DEBUG", logger="kamstrup382.collector.pulse_inputs"):
        inputs.readout(replaced(first, read_at=later, values=values))  # 0.5 kWh: rounding
        inputs.readout(replaced(first, read_at=later, values=replaced(values, energy=Decimal(103))))
    records = [r for r in caplog.records if r.name == "kamstrup382.collector.pulse_inputs"]
    assert [r.levelname for r in records] == ["DEBUG", "WARNING"]
    assert "drift -3" in records[1].getMessage() and "misses pulses" in records[1].getMessage()
    assert live.drift == Decimal(-3)
