"""Home Assistant devices against a real mosquitto: ghost devices cleared, a renamed meter
keeping its device, the upgrade from per-entity configs, the readout message, and collectors
sharing one PostgreSQL database clearing only what none of them announces."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from kamstrup382.outputs.discovery import MeterSetup
from kamstrup382.storage import ReadingRecord, Storage
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import Watcher, failure, make_output, reading, settle
from .test_discovery import check_device_schema
from .test_mqtt import HOUSE, HOUSE_CONFIG, store_and_publish

pytestmark = pytest.mark.mosquitto

GARAGE = "kamstrup382_685-382-OK-15_00000007"
GARAGE_CONFIG = f"homeassistant/device/{GARAGE}/config"


def garage(index: int = 0) -> ReadingRecord:
    return reading("garage", index, customer_number="00000007")


async def retained(broker: MosquittoBroker, topics: list[str]) -> dict[str, str]:
    """The retained messages on ``topics`` now, as a new subscriber gets them."""
    marker = "k382-test/late-marker"
    async with Watcher(
        broker.host, broker.port, [*topics, marker], client_id="k382-test-late"
    ) as late:
        await settle(late, marker)
        return {m.topic: m.text for m in late.messages if m.retain}


def cleared(watcher: Watcher, topic: str) -> bool:
    return any(m.payload == b"" for m in watcher.on(topic))


async def test_a_meter_removed_from_the_config_is_cleared_at_the_next_start(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    first = make_output(mosquitto, ["house", "garage"])
    await first.start(storage)
    try:
        await store_and_publish(storage, first, [reading("house", 0), garage()])
        await watcher.wait_count(GARAGE_CONFIG, 1)
        await watcher.wait_count("kamstrup382/garage/readout", 1)
    finally:
        await first.stop()
    before = await retained(mosquitto, ["homeassistant/device/#", "kamstrup382/garage/#"])
    assert GARAGE_CONFIG in before and "kamstrup382/garage/availability" in before
    # garage is gone from the config: the next start clears its device and its messages
    second = make_output(mosquitto, ["house"])
    await second.start(storage)
    try:
        await watcher.wait_for(lambda ms: cleared(watcher, GARAGE_CONFIG))
        await watcher.wait_count(HOUSE_CONFIG, 2)
        for topic in ("availability", "readout", "state"):
            await watcher.wait_for(lambda ms, t=topic: cleared(watcher, f"kamstrup382/garage/{t}"))
    finally:
        await second.stop()
    after = await retained(mosquitto, ["homeassistant/#", "kamstrup382/#"])
    assert [t for t in after if "garage" in t or GARAGE in t] == []
    assert HOUSE_CONFIG in after
    assert not cleared(watcher, HOUSE_CONFIG)
    # the storage forgot it: a third start clears nothing more
    assert storage.stale_announcements("mqtt:homeassistant", "x", [HOUSE], everyone=True) == {}


async def test_a_renamed_meter_keeps_its_device_and_entities(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    first = make_output(mosquitto, ["house"])
    await first.start(storage)
    try:
        await store_and_publish(storage, first, [reading("house", 0)])
        await watcher.wait_count(HOUSE_CONFIG, 1)
        await watcher.wait_count("kamstrup382/house/availability", 1)
    finally:
        await first.stop()
    old = watcher.on(HOUSE_CONFIG)[-1].json()
    # the config calls the same meter "home" now; it is known by its first reading
    second = make_output(mosquitto, [MeterSetup("home", timedelta(minutes=15))])
    await second.start(storage)
    try:
        await store_and_publish(storage, second, [reading("home", 1)])
        await watcher.wait_for(
            lambda ms: any(m.json()["dev"]["name"] == "home" for m in watcher.on(HOUSE_CONFIG))
        )
        await watcher.wait_for(lambda ms: cleared(watcher, "kamstrup382/house/availability"))
        await watcher.wait_count("kamstrup382/home/state", 1)
    finally:
        await second.stop()
    await settle(watcher)
    new = watcher.on(HOUSE_CONFIG)[-1].json()
    check_device_schema(HOUSE_CONFIG, new)
    # one device all along: never cleared, the same identifiers and unique ids
    assert not cleared(watcher, HOUSE_CONFIG)
    assert new["dev"]["identifiers"] == old["dev"]["identifiers"] == [HOUSE]
    assert [c["unique_id"] for c in new["cmps"].values()] == [
        c["unique_id"] for c in old["cmps"].values()
    ]
    assert new["state_topic"] == "kamstrup382/home/state"
    after = await retained(mosquitto, ["kamstrup382/#"])
    assert not [t for t in after if t.startswith("kamstrup382/house/")]


async def test_an_upgrade_clears_the_per_entity_configs_once(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    # what version 0.1 left on the broker: one retained config per register
    legacy = [
        f"homeassistant/sensor/kamstrup382_house/{name}/config"
        for name in (
            *("customer_number", "energy", "tariff_1", "tariff_2"),
            *("hour_counter", "pulse_input", "actual_peak", "last_month_peak"),
        )
    ]
    # and of a meter removed from the config before the upgrade, still in the storage
    removed = [t.replace("kamstrup382_house/", "kamstrup382_old/") for t in legacy]
    for topic in legacy + removed:
        await watcher.publish(
            topic, '{"name":"old","state_topic":"kamstrup382/house/state"}', retain=True
        )
    await asyncio.to_thread(storage.record, [reading("house", 0), reading("old", 0)], outbox=False)
    output = make_output(mosquitto, ["house"])
    await output.start(storage)
    try:
        await watcher.wait_count(HOUSE_CONFIG, 1)
    finally:
        await output.stop()
    topics = [m.topic for m in watcher.messages]
    for topic in legacy + removed:
        assert cleared(watcher, topic), topic
        # cleared before the device is announced: no moment with both in Home Assistant
        last_clear = max(i for i, m in enumerate(watcher.messages) if m.topic == topic)
        assert last_clear < topics.index(HOUSE_CONFIG)
    assert not [t for t in await retained(mosquitto, ["homeassistant/sensor/#"])]
    # once: the next start does not clear them again
    count = len(watcher.messages)
    again = make_output(mosquitto, ["house"])
    await again.start(storage)
    try:
        await watcher.wait_count(HOUSE_CONFIG, 2)
    finally:
        await again.stop()
    await settle(watcher)
    assert not [m for m in watcher.messages[count:] if m.topic.startswith("homeassistant/sensor/")]


async def test_the_readout_message_says_failing_with_the_last_error(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    output = make_output(mosquitto, ["house"])
    topic = "kamstrup382/house/readout"
    await output.start(storage)
    try:
        await store_and_publish(storage, output, [reading("house", 0)])
        await watcher.wait_count(topic, 1)
        await store_and_publish(storage, output, [], [failure("house", 1)])
        await watcher.wait_count(topic, 2)
        await store_and_publish(storage, output, [reading("house", 2)])
        await watcher.wait_count(topic, 3)
    finally:
        await output.stop()
    states = [m.json() for m in watcher.on(topic)]
    assert [s["state"] for s in states] == ["ok", "failing", "ok"]
    assert states[1]["last_error"] == "no answer (phase answer, 0 bytes received)"
    assert states[1]["last_error_kind"] == "timeout"
    assert states[1]["last_error_at"] == "2026-03-01T00:15:03Z"
    assert states[2]["last_reading_at"] == "2026-03-01T00:30:02.002000Z"
    # the binary sensor reads it, and stays available while the meter fails
    config = watcher.on(HOUSE_CONFIG)[-1].json()
    failing = config["cmps"]["readout_failing"]
    assert failing["state_topic"] == topic and failing["json_attributes_topic"] == topic
    # and after a restart the stored status gives the same message
    again = make_output(mosquitto, ["house"])
    await asyncio.to_thread(storage.record, [], [failure("house", 3)])
    await again.start(storage)
    try:
        await watcher.wait_count(topic, 4)
    finally:
        await again.stop()
    assert watcher.on(topic)[-1].json()["state"] == "failing"


@pytest.mark.postgres
async def test_collectors_sharing_a_database_clear_only_what_none_of_them_announces(
    mosquitto: MosquittoBroker, watcher: Watcher, postgres_db_url: str
) -> None:
    fast = {"timeout": 1, "outbox_lease": 2}  # upkeep every second
    with open_storage(postgres_db_url) as store_a, open_storage(postgres_db_url) as store_b:
        await asyncio.to_thread(store_a.record, [reading("house", 0), garage()], outbox=False)
        # both collectors list both meters (they take turns reading them through leases)
        a = make_output(mosquitto, ["house", "garage"], client_id="k382-a", **fast)
        b = make_output(mosquitto, ["house", "garage"], client_id="k382-b", **fast)
        await a.start(store_a)
        await b.start(store_b)
        a2 = make_output(mosquitto, ["house"], client_id="k382-a2", **fast)
        b2 = make_output(mosquitto, ["house"], client_id="k382-b2", **fast)
        try:
            await watcher.wait_count(GARAGE_CONFIG, 2)
            # garage leaves the config: a restarts first; b, with the old config, still runs
            await a.stop()
            await a2.start(store_a)
            await watcher.wait_count(HOUSE_CONFIG, 3)
            await asyncio.sleep(3)  # several upkeeps of both
            await settle(watcher)
            assert not cleared(watcher, GARAGE_CONFIG)  # b announces it
            # b restarts with the new config: now no collector announces garage
            await b.stop()
            await b2.start(store_b)
            await watcher.wait_for(lambda ms: cleared(watcher, GARAGE_CONFIG))
        finally:
            for output in (a, b, a2, b2):
                await output.stop()
    assert not cleared(watcher, HOUSE_CONFIG)
    after = await retained(mosquitto, ["homeassistant/device/#"])
    assert set(after) == {HOUSE_CONFIG}


async def test_a_meter_removed_by_a_reload_is_cleared_while_running(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    output = make_output(mosquitto, ["house", "garage"])
    await output.start(storage)
    try:
        await store_and_publish(storage, output, [reading("house", 0), garage()])
        await watcher.wait_count(GARAGE_CONFIG, 1)
        # SIGHUP: the collector hands the new meter list over (Collector.reload)
        output.meters_changed([MeterSetup("house", timedelta(minutes=15))])
        await watcher.wait_for(lambda ms: cleared(watcher, GARAGE_CONFIG))
        await watcher.wait_for(lambda ms: cleared(watcher, "kamstrup382/garage/availability"))
    finally:
        await output.stop()
    assert not cleared(watcher, HOUSE_CONFIG)
    after = await retained(mosquitto, ["homeassistant/#", "kamstrup382/#"])
    assert [t for t in after if "garage" in t or GARAGE in t] == []
