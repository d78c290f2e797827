"""The MQTT power output against a real mosquitto: what is due is sent, the newest figure only;
the sensors announced again when Home Assistant comes back; a broker restart: reconnected with
backoff, the live figure flowing again; its last will and its goodbye say offline."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kamstrup382.outputs.mqtt_settings import MqttSettings
from kamstrup382.outputs.power import PowerMqttOutput
from kamstrup382.pulses.live import PowerUpdate
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import Watcher

pytestmark = pytest.mark.mosquitto

POWER = "kamstrup382/house/power"
CONFIG = "homeassistant/sensor/kamstrup382_house/power/config"


def update(watts: float, *, report: bool = True, connected: bool = True) -> PowerUpdate:
    return PowerUpdate(
        meter="house",
        at=datetime.now(UTC),
        watts=watts,
        bounded=False,
        energy_kwh=Decimal("100.5"),
        pulses=int(watts),
        rejected=0,
        missed=0,
        drift_kwh=None,
        pulse_at=datetime.now(UTC),
        connected=connected,
        report=report,
    )


def powers(watcher: Watcher) -> list[float]:
    return [m.json()["power"] for m in watcher.on(POWER)]


async def test_due_updates_reach_the_broker_through_a_restart(mosquitto: MosquittoBroker) -> None:
    settings = replace(
        MqttSettings.parse({"url": mosquitto.url, "client_id": "k382-power-test"}),
        reconnect_delay=0.05,
        reconnect_max=0.2,
    )
    # the device is the meter's unique_id: announced at once (without one, after a reading)
    output = PowerMqttOutput(settings, {"house": "house-main"})
    async with Watcher(mosquitto.host, mosquitto.port, ["kamstrup382/#", "homeassistant/#"]) as w:
        output.power(update(1000.0))
        await w.wait_for(lambda ms: [m.topic for m in ms].count(POWER) == 1)
        output.power(update(1100.0, report=False))  # not due: not sent
        output.power(update(2000.0))
        await w.wait_for(lambda ms: [m.topic for m in ms].count(POWER) == 2)
        assert powers(w) == [1000.0, 2000.0]
        assert [m.text for m in w.on("kamstrup382/power_status")] == ["online"]
        assert [m.text for m in w.on("kamstrup382/house/pulse_availability")] == ["online"]
        assert len(w.on(CONFIG)) == 1
        device = w.on(CONFIG)[0].json()["device"]
        assert device["identifiers"] == ["kamstrup382_house-main"]  # the meter's own device

        await w.publish("homeassistant/status", "online")  # Home Assistant restarted
        await w.wait_for(lambda ms: [m.topic for m in ms].count(CONFIG) == 2)

        subscribed = w.subscribed
        await asyncio.to_thread(mosquitto.restart)
        await w.wait_subscribed(subscribed + 1)
        await asyncio.sleep(0.5)
        for watts in (3000.0, 3100.0, 3200.0):  # sent once the output is back
            output.power(update(watts))
            await asyncio.sleep(0.3)
        await w.wait_for(lambda ms: 3200.0 in [m.json()["power"] for m in ms if m.topic == POWER])
        assert output.connected.is_set()

        output.power(update(0.0, connected=False))
        await w.wait_for(
            lambda ms: (
                [m.text for m in ms if m.topic == "kamstrup382/house/pulse_availability"][-1:]
                == ["offline"]
            )
        )
        await output.stop()
        await w.wait_for(
            lambda ms: (
                [m.text for m in ms if m.topic == "kamstrup382/power_status"][-1:] == ["offline"]
            )
        )
    assert output.published >= 4
