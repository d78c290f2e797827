"""The whole path into InfluxDB beside MQTT: emulated meters over TCP -> collector -> storage ->
each output from its own queue. One server down never holds back the other."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.collector.config import parse_config
from kamstrup382.emulator import EmulatorThread
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.outputs import build_outputs
from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.outputs.influxdb_series import KMP_FIELDS
from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.storage import KmpReadingRecord, ReadingRecord, Storage
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config
from tests.fixtures.influxdb import InfluxServer
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import PATIENCE
from .test_influxdb import QUERY, nanoseconds, wait_for_state

pytestmark = pytest.mark.mosquitto

SPEED = 200.0
METERS = 3


def toml(storage: str, ports: list[str], mqtt_url: str, influx_url: str) -> str:
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

[influxdb]
url = "{influx_url}"
database = "k382"
client_id = "k382-e2e"
retry_delay = 0.05
retry_max = 0.2

{meters}
"""


async def backlog(storage: Storage, output: str) -> int:
    return (await asyncio.to_thread(storage.outbox_backlog, output))[0]


async def until_empty(storage: Storage, output: str) -> None:
    async def empty() -> None:
        while await backlog(storage, output):  # noqa: ASYNC110 - a poll
            await asyncio.sleep(0.02)

    await asyncio.wait_for(empty(), PATIENCE)


async def test_each_output_drains_its_own_queue_whatever_the_other_does(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    clock = ManualClock(datetime(2026, 3, 1, 10, 1, tzinfo=UTC))
    broker = MosquittoBroker(tmp_path / "mosquitto")  # not started yet: MQTT is down
    try:
        with EmulatorThread(meters=METERS, transport="tcp", speed=SPEED, delay=0.02) as emu:
            text = toml(url, emu.ports, broker.url, influxdb.url)
            config = parse_config(tomllib.loads(text), env={})
            outputs = build_outputs(config.sections, [m.name for m in config.meters])
            mqtt, influx = outputs
            assert isinstance(mqtt, MqttOutput) and isinstance(influx, InfluxOutput)
            with open_storage(url) as storage:
                async with Collector(config, storage, outputs, clock=clock) as collector:
                    # MQTT down: InfluxDB gets every reading, MQTT's queue keeps them
                    for _ in range(2):
                        assert (await collector.run_once()).ok
                        clock.advance(timedelta(minutes=15))
                    await until_empty(storage, "influxdb")
                    assert await backlog(storage, "mqtt") == 2 * METERS
                    # InfluxDB down, MQTT back: MQTT catches up, InfluxDB's queue keeps them
                    influxdb.stop()
                    broker.start()
                    assert (await collector.run_once()).ok
                    clock.advance(timedelta(minutes=15))
                    await until_empty(storage, "mqtt")
                    await wait_for_state(influx, "unreachable")
                    assert await backlog(storage, "influxdb") == METERS
                    # InfluxDB back: its backlog lands, at the readings' own times
                    influxdb.start()
                    await until_empty(storage, "influxdb")
                    assert mqtt.published == 3 * METERS
                stored = list(storage.readings())
    finally:
        broker.kill()
    assert len(stored) == 3 * METERS
    rows = influxdb.rows(QUERY, "k382")
    assert sorted((row["meter"], row["time"]) for row in rows) == sorted(
        (r.meter, nanoseconds(r)) for r in stored
    )
    for record in stored:
        [row] = [r for r in rows if (r["meter"], r["time"]) == (record.meter, nanoseconds(record))]
        assert row["energy_kwh"] == int(record.values.energy)
        assert row["actual_peak_w"] == int(record.values.actual_peak * 1000)


async def test_a_kmp_meter_beside_a_mode_a_meter_lands_in_influxdb(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    """A 685-382 (mode A emulator) and a 382Jx3 (KMP emulator) collected together: both kinds
    of point in the one measurement, the KMP one with exactly the registers its meter sent."""
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    clock = ManualClock(datetime(2026, 3, 1, 10, 1, tzinfo=UTC))
    extra = (
        f'[influxdb]\nurl = "{influxdb.url}"\ndatabase = "k382"\nclient_id = "k382-e2e"\n'
        "retry_delay = 0.05\nretry_max = 0.2\n"
    )
    sent: list[dict[str, Decimal]] = []
    with (
        EmulatorThread(meters=1, transport="tcp", speed=SPEED, delay=0.02) as mode_a,
        KmpEmulatorThread(1) as kmp,
    ):
        config = make_config(
            url, [*mode_a.ports, *kmp.ports], extra=extra, meter_extra={1: 'protocol = "kmp"'}
        )
        [influx] = build_outputs(config.sections, [m.name for m in config.meters])
        assert isinstance(influx, InfluxOutput)
        with open_storage(url) as storage:
            async with Collector(config, storage, [influx], clock=clock) as collector:
                for _ in range(2):
                    assert (await collector.run_once()).ok
                    sent.append(kmp.readout_values(0))
                    clock.advance(timedelta(minutes=15))
                await until_empty(storage, "influxdb")
            stored = list(storage.readings())
    assert sorted(r.protocol for r in stored) == ["iec", "iec", "kmp", "kmp"]
    rows = {(row["meter"], row["time"]): row for row in influxdb.rows(QUERY, "k382")}
    assert len(rows) == 4
    kmp_records = [r for r in stored if isinstance(r, KmpReadingRecord)]
    for record, values in zip(kmp_records, sent, strict=True):
        row = rows[("m1", nanoseconds(record))]
        assert row["meter_type"] == "0x0382" and row["serial"] == str(record.serial)
        for f in KMP_FIELDS:  # the emulator's digits, through storage and line protocol
            assert Decimal(repr(row[f.key])) == values[f.register], f.key
        assert row["tariff_1_kwh"] is None and row["answer_delay_s"] is None  # none made up
    for record in stored:
        if isinstance(record, ReadingRecord):
            assert rows[("m0", nanoseconds(record))]["energy_kwh"] == int(record.values.energy)
