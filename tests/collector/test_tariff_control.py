"""Tariff control (pin 4) end to end on loopback: the collector's tariff output drives an
emulated meter through its control port (``k382 emulate --control-listen``), from a schedule
and from Home Assistant's "Tariff" select (a real mosquitto); the meter's tariff registers
show it. The emulated meter runs an hour a real second at 10 kW: each register that counts
moves about 10 kWh a second."""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kamstrup382.cli.emulate import _reply
from kamstrup382.clock import ManualClock, ScaledClock
from kamstrup382.collector import Collector
from kamstrup382.collector.config import parse_config
from kamstrup382.collector.tariff_control import TariffControl
from kamstrup382.emulator import Emulator
from kamstrup382.emulator.control_server import ControlServer
from kamstrup382.emulator.load import parse_load
from kamstrup382.errors import ConfigError, UsageError
from kamstrup382.outputs import build_outputs
from kamstrup382.protocol import MeterValues
from kamstrup382.pulses.tariff import TariffError, open_tariff_output
from kamstrup382.reader import AsyncReader
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker
from tests.outputs.helpers import Watcher

START = datetime(2026, 3, 1, tzinfo=UTC)


async def until(condition: Callable[[], object], within: float, what: str) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.02)


async def counting(port: str) -> tuple[int, int]:
    """How much each tariff register moves over one real second: (tariff 1, tariff 2)."""

    async def values() -> MeterValues:
        async with AsyncReader(port) as reader:
            return (await reader.read()).telegram.meter_values()

    before = await values()
    await asyncio.sleep(1.0)
    after = await values()
    return int(after.tariff_1 - before.tariff_1), int(after.tariff_2 - before.tariff_2)


def meter_toml(storage: str, port: str, tariff: str, extra: str = "") -> str:
    return f"""
[storage]
url = "{storage}"

{extra}

[[meters]]
name = "house"
port = "{port}"
tariff_output = "{tariff}"
"""


def emulated() -> Emulator:
    return Emulator(
        1,
        transport="tcp",
        speed=50,
        clock=ScaledClock(START, 3600),
        load=parse_load("constant:10"),
    )


async def test_a_schedule_switches_the_meters_tariff(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    clock = ManualClock(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    async with emulated() as emulator:
        control = ControlServer(lambda line: _reply(emulator, line), "127.0.0.1", 0)
        await control.start()
        try:
            text = meter_toml(url, emulator.ports[0], control.url)
            text += 'tariff_schedule = "00:00-12:00"\ntariff_zone = "UTC"\n'
            config = parse_config(tomllib.loads(text), env={})
            with open_storage(url) as storage:
                async with Collector(config, storage, clock=clock) as collector:
                    board = collector.tariffs.board
                    await until(lambda: board.state("house").tariff == 2, 5, "tariff 2 set")
                    assert board.state("house").origin == "schedule"
                    one, two = await counting(emulator.ports[0])
                    assert one == 0 and two >= 5  # the meter counts on tariff 2
                    clock.set(datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC))  # the range ends
                    await until(lambda: board.state("house").tariff == 1, 5, "tariff 1 set")
                    one, two = await counting(emulator.ports[0])
                    assert one >= 5 and two == 0
        finally:
            await control.close()


@pytest.mark.mosquitto
async def test_home_assistants_select_switches_the_meters_tariff(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    async with (
        Watcher(mosquitto.host, mosquitto.port, ["kamstrup382/#", "homeassistant/#"]) as watcher,
        emulated() as emulator,
    ):
        control = ControlServer(lambda line: _reply(emulator, line), "127.0.0.1", 0)
        await control.start()
        try:
            extra = f'[mqtt]\nurl = "{mosquitto.url}"\nclient_id = "k382-tariff"\n'
            text = meter_toml(url, emulator.ports[0], control.url, extra)
            # its identity known up front: the select is announced before a first reading
            text += 'unique_id = "house-main"\n'
            config = parse_config(tomllib.loads(text), env={})
            outputs = build_outputs(config.sections, config.meters, module=True)
            with open_storage(url) as storage:
                async with Collector(config, storage, outputs) as collector:
                    select = "homeassistant/select/kamstrup382_house/tariff/config"
                    await watcher.wait_for(lambda ms: any(m.topic == select for m in ms))
                    (announced,) = [m.json() for m in watcher.on(select)][-1:]
                    assert announced["device"]["identifiers"] == ["kamstrup382_house-main"]
                    assert announced["command_topic"] == "kamstrup382/house/tariff/set"
                    assert announced["state_topic"] == "kamstrup382/house/tariff"
                    assert announced["options"] == ["1", "2"]
                    one, two = await counting(emulator.ports[0])
                    assert one >= 5 and two == 0  # no schedule: pin 4 open, as it was

                    await watcher.publish("kamstrup382/house/tariff/set", "2")
                    board = collector.tariffs.board
                    await until(lambda: board.state("house").tariff == 2, 5, "tariff 2 set")
                    assert board.state("house").origin == "home assistant"
                    await watcher.wait_for(
                        lambda ms: (
                            [m.text for m in ms if m.topic == "kamstrup382/house/tariff"] == ["2"]
                        )
                    )
                    one, two = await counting(emulator.ports[0])
                    assert one == 0 and two >= 5

                    await watcher.publish("kamstrup382/house/tariff/set", "3")  # refused
                    await watcher.publish("kamstrup382/house/tariff/set", "1")
                    await until(lambda: board.state("house").tariff == 1, 5, "tariff 1 set")
                    one, two = await counting(emulator.ports[0])
                    assert one >= 5 and two == 0
        finally:
            await control.close()


async def test_the_control_port_answers_each_line() -> None:
    async with emulated() as emulator:
        control = ControlServer(lambda line: _reply(emulator, line), "127.0.0.1", 0)
        await control.start()
        url = control.url
        try:
            host, port = control.url.removeprefix("tcp://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"tariff 2\n1 tariff 3\npulse 5\n")
            replies = [(await reader.readline()).decode().strip() for _ in range(3)]
            writer.close()
            assert replies[0].startswith("ok: every meter: tariff 2")
            assert emulator.models[0].tariff_input is True
            assert replies[1].startswith("error:") and "tariffs 1 and 2 only" in replies[1]
            assert replies[2].startswith("error:") and "--pulse-input" in replies[2]
            output = open_tariff_output(f"{control.url}/1")
            await output.set(1)
            assert emulator.models[0].tariff_input is False
            with pytest.raises(TariffError, match="tariffs 1 and 2 only"):
                await output.set(3)
        finally:
            await control.close()
    with pytest.raises(TariffError, match=r"tcp://127\.0\.0\.1"):
        await open_tariff_output(url).set(2)  # nobody listens any more


def test_bad_tariff_keys_are_named() -> None:
    base = {"name": "house", "port": "socket://127.0.0.1:1"}
    for keys, key in (
        ({"tariff_output": "udp://x"}, "tariff_output"),
        ({"tariff_output": "gpio:/dev/gpiochip0"}, "tariff_output"),
        ({"tariff_schedule": "22:00-06:00"}, "tariff_schedule"),
        ({"tariff_output": "tcp://h:1", "tariff_schedule": "25:00-06:00"}, "tariff_schedule"),
        ({"tariff_output": "tcp://h:1", "tariff_zone": "UTC"}, "tariff_zone"),
        (
            {
                "tariff_output": "tcp://h:1",
                "tariff_schedule": "1:00-2:00",
                "tariff_zone": "Nowhere",
            },
            "tariff_zone",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config({"meters": [{**base, **keys}]}, env={})
        assert caught.value.key == f"meters[0].{key}"


async def test_a_gpio_tariff_output_without_its_extra_or_chip_names_the_key() -> None:
    config = parse_config(
        {
            "meters": [
                {
                    "name": "house",
                    "port": "socket://127.0.0.1:1",
                    "tariff_output": "gpio:/dev/nochip9:27",
                }
            ]
        },
        env={},
    )
    control = TariffControl(config.meters, ManualClock(START))
    with pytest.raises(ConfigError) as caught:
        await control.start()
    assert caught.value.key == "meters[0].tariff_output"
    assert "/dev/nochip9" in str(caught.value) or "gpio" in str(caught.value)
    await control.close()
    with pytest.raises(UsageError):
        open_tariff_output("gpio:chip:x")
