"""The MQTT output against a real mosquitto on loopback: discovery, state messages, outages,
Home Assistant's status topic, the last will, TLS and MQTT 5.

Readings go through the storage exactly as the collector's writer sends them: stored with
``outbox=True`` in one transaction, then handed to ``publish``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.protocol import KAMSTRUP_382
from kamstrup382.storage import FailureRecord, ReadingRecord, Storage
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import PATIENCE, Gate, Received, Watcher, failure, make_output, reading, settle
from .test_discovery import check_device_schema

pytestmark = pytest.mark.mosquitto

#: The meters of these tests are 685-382s: their registers.
REGISTERS = KAMSTRUP_382.registers


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """The outbox of either backend: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_db_url")
    with open_storage(url) as store:
        yield store


async def store_and_publish(
    storage: Storage,
    output: MqttOutput,
    readings: Sequence[ReadingRecord],
    failures: Sequence[FailureRecord] = (),
) -> None:
    """What the collector's writer does with one batch."""
    await asyncio.to_thread(storage.record, readings, failures, outbox=True)
    await output.publish(readings, failures)


async def drained(storage: Storage) -> None:
    """Wait until the outbox is empty: every reading so far was acknowledged by the broker."""

    async def empty() -> None:
        while await asyncio.to_thread(storage.outbox_pending, 1):  # noqa: ASYNC110 - a poll
            await asyncio.sleep(0.01)

    await asyncio.wait_for(empty(), PATIENCE)


HOUSE = "kamstrup382_685-382-OK-15_00054042"
HOUSE_CONFIG = f"homeassistant/device/{HOUSE}/config"


async def test_discovery_is_retained_and_valid_one_config_per_device(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    output = make_output(mosquitto, ["house", "flat.2"])
    await output.start(storage)
    try:
        # a meter is announced once it is known: at its first reading
        await store_and_publish(storage, output, [reading("house", 0)])
        await watcher.wait_count(HOUSE_CONFIG, 1)
        await watcher.wait_count("kamstrup382/house/state", 1)
        flat = reading("flat.2", 0, customer_number="00000002")
        await store_and_publish(storage, output, [flat])
        await watcher.wait_count("kamstrup382/flat.2/state", 1)
    finally:
        await output.stop()
    configs = [m for m in watcher.messages if m.topic.startswith("homeassistant/device/")]
    for message in configs:
        check_device_schema(message.topic, message.json())
    # the device config came before the meter's first state message
    topics = [m.topic for m in watcher.messages]
    assert topics.index(HOUSE_CONFIG) < topics.index("kamstrup382/house/state")
    house = watcher.on(HOUSE_CONFIG)[-1].json()
    assert house["dev"]["model_id"] == "685-382-OK-15"
    assert house["dev"]["serial_number"] == "00054042"
    assert house["dev"]["name"] == "house"
    # retained: a client subscribing later gets every config at once
    async with Watcher(
        mosquitto.host, mosquitto.port, ["homeassistant/device/#"], client_id="late"
    ) as late:
        await late.wait_for(lambda ms: len(ms) >= 2)
        assert all(m.retain for m in late.messages)
        latest = {m.topic: m.json() for m in late.messages}
    assert set(latest) == {
        HOUSE_CONFIG,
        "homeassistant/device/kamstrup382_685-382-OK-15_00000002/config",
    }
    assert latest[HOUSE_CONFIG] == house


async def test_state_messages_match_the_stored_readings(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    output = make_output(mosquitto, ["house", "garage"], qos=1, retain=False)
    await output.start(storage)
    try:
        for index in range(3):
            batch = [reading("house", index), reading("garage", index, customer_number="00000777")]
            await store_and_publish(storage, output, batch)
        await watcher.wait_count("kamstrup382/house/state", 3)
        await watcher.wait_count("kamstrup382/garage/state", 3)
    finally:
        await output.stop()
    stored = {(r.meter, r.read_at.isoformat()): r for r in storage.readings()}
    assert len(stored) == 6
    for meter in ("house", "garage"):
        messages = watcher.on(f"kamstrup382/{meter}/state")
        assert len(messages) == 3
        for message in messages:
            state = message.json()
            record = stored[(meter, state["read_at"])]
            assert state["meter"] == meter
            registers = state["registers"]
            assert registers["customer_number"]["value"] == record.values.customer_number
            for register in REGISTERS[1:]:
                got = registers[register.name]["value"]
                assert str(got) == str(getattr(record.values, register.name))
            assert state["identification"]["type_number"]["text"] == record.type_number
            assert state["timing"]["duration_s"] == round(record.duration, 3)  # to the ms
            assert not message.retain and message.qos == 1
    assert await asyncio.to_thread(storage.outbox_pending) == []
    assert output.published == 6


def live_states(messages: Sequence[Received], meter: str | None = None) -> list[Received]:
    """State messages as routed to the watcher when published (not the retained copy a new
    subscription gets)."""
    return [
        m
        for m in messages
        if m.topic.endswith("/state")
        and not m.retain
        and (meter is None or m.topic == f"kamstrup382/{meter}/state")
    ]


async def outage(broker: MosquittoBroker, gate: Gate) -> None:
    """Stop the broker; the caller runs cycles; then :func:`recover`."""
    await gate.close()
    await asyncio.to_thread(broker.stop)


async def recover(broker: MosquittoBroker, gate: Gate, watcher: Watcher) -> None:
    """Start the broker again; let the output through once the watcher listens again."""
    subscribed = watcher.subscribed
    await asyncio.to_thread(broker.start)
    await watcher.wait_subscribed(subscribed + 1)
    await gate.open()


async def test_broker_outage_loses_nothing_and_keeps_the_order(
    mosquitto: MosquittoBroker, watcher: Watcher, any_storage: Storage
) -> None:
    """Stop the broker for several cycles, restart it: every reading arrives once, in order."""
    storage = any_storage
    expected: list[tuple[str, str]] = []
    index = 0

    async def cycle() -> None:
        nonlocal index
        batch = [reading("house", index), reading("garage", index)]
        expected.extend((r.meter, r.read_at.isoformat()) for r in batch)
        await store_and_publish(storage, output, batch)
        index += 1

    async with Gate(mosquitto.host, mosquitto.port) as gate:
        output = make_output(gate, ["house", "garage"])
        await output.start(storage)
        try:
            await cycle()
            for _ in range(2):  # two outages of four cycles each
                # the outage starts between cycles: a broker gone while acknowledging a message
                # makes it come again (at least once), see the next test
                await drained(storage)
                await outage(mosquitto, gate)
                for _ in range(4):
                    await cycle()  # must neither raise nor wait for the broker
                pending = await asyncio.to_thread(storage.outbox_pending, 1000)
                assert len(pending) == 8  # the four cycles, nothing of before
                await recover(mosquitto, gate, watcher)
                await cycle()
                await watcher.wait_for(lambda ms: len(live_states(ms)) >= len(expected))
            await drained(storage)
        finally:
            await output.stop()
    assert mosquitto.starts == 3
    await settle(watcher)
    received = [(m.topic.split("/")[1], m.json()["read_at"]) for m in live_states(watcher.messages)]
    assert received == expected  # each once, in the order they were stored
    assert output.connections == 3


async def test_a_broker_stopped_mid_backlog_loses_nothing(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    """Stopped while the backlog is being published: every reading still arrives, and in the
    order stored once repeats are dropped. (A message whose acknowledgement the outage ate is
    sent again: MQTT QoS 1 is at least once; ``read_at`` tells a repeat.)"""
    records = [reading("house", index) for index in range(1500)]
    async with Gate(mosquitto.host, mosquitto.port) as gate:
        await outage(mosquitto, gate)
        output = make_output(gate, ["house"], batch_size=100)
        await output.start(storage)
        try:
            await store_and_publish(storage, output, records)
            await recover(mosquitto, gate, watcher)
            await watcher.wait_for(lambda ms: len(live_states(ms)) >= 100)
            await outage(mosquitto, gate)
            await recover(mosquitto, gate, watcher)
            await watcher.wait_for(
                lambda ms: len({m.payload for m in live_states(ms)}) == len(records)
            )
            await drained(storage)
        finally:
            await output.stop()
    received = [m.json()["read_at"] for m in live_states(watcher.messages)]
    expected = [r.read_at.isoformat() for r in records]
    assert list(dict.fromkeys(received)) == expected
    assert len(received) - len(expected) <= 2 * output.settings.batch_size


async def test_readings_stored_while_stopped_are_published_after_a_restart(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    """The outbox is durable: a collector that stops during an outage publishes the backlog
    when it runs again."""
    subscribed = watcher.subscribed
    await asyncio.to_thread(mosquitto.stop)
    first = make_output(mosquitto, stop_timeout=0.5)
    await first.start(storage)
    for index in range(3):
        await store_and_publish(storage, first, [reading("house", index)])
    await first.stop()
    assert len(await asyncio.to_thread(storage.outbox_pending)) == 3
    await asyncio.to_thread(mosquitto.start)
    await watcher.wait_subscribed(subscribed + 1)
    second = make_output(mosquitto)
    await second.start(storage)
    try:
        await watcher.wait_for(lambda ms: len(live_states(ms)) >= 3)
        await drained(storage)
    finally:
        await second.stop()
    states = live_states(watcher.messages)
    assert [m.json()["read_at"] for m in states] == [
        reading("house", i).read_at.isoformat() for i in range(3)
    ]


async def test_a_stop_mid_backlog_says_offline_and_the_next_start_goes_on(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    """Shutdown gives the backlog ``stop_timeout`` seconds; what is left waits in the outbox,
    the status still turns ``offline``, and the next start publishes the rest, in order."""
    records = [reading("house", index) for index in range(2000)]
    await asyncio.to_thread(storage.record, records, outbox=True)
    first = make_output(mosquitto, stop_timeout=0.05, batch_size=50)
    await first.start(storage)
    await watcher.wait_for(lambda ms: len(live_states(ms)) >= 1)
    await first.stop()
    await watcher.wait_for(
        lambda ms: [m.text for m in ms if m.topic == "kamstrup382/status"][-1:] == ["offline"]
    )
    second = make_output(mosquitto)
    await second.start(storage)
    try:
        await watcher.wait_for(lambda ms: len({m.payload for m in live_states(ms)}) == len(records))
        await drained(storage)
    finally:
        await second.stop()
    received = [m.json()["read_at"] for m in live_states(watcher.messages)]
    expected = [r.read_at.isoformat() for r in records]
    assert list(dict.fromkeys(received)) == expected
    assert len(received) == len(expected)  # a clean stop repeats nothing
    assert first.published + second.published == len(records)


async def test_home_assistant_online_triggers_a_new_announcement(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    await asyncio.to_thread(storage.record, [reading("house", 0)], outbox=False)
    output = make_output(mosquitto, ["house"])
    await output.start(storage)
    try:
        first = await watcher.wait_count(HOUSE_CONFIG, 1)
        # the device facts come from the storage: no reading needed after the restart
        assert first[0].json()["dev"]["serial_number"] == "00054042"
        await watcher.publish("homeassistant/status", "offline")
        await watcher.publish("homeassistant/status", "online")
        await watcher.wait_count(HOUSE_CONFIG, 2)
    finally:
        await output.stop()
    await settle(watcher)
    assert len(watcher.on(HOUSE_CONFIG)) == 2  # "offline" announced nothing


async def test_discovery_can_be_switched_off(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    output = make_output(mosquitto, ["house"], discovery=False)
    await output.start(storage)
    try:
        await store_and_publish(storage, output, [reading("house", 0)])
        await watcher.wait_count("kamstrup382/house/state", 1)
        await watcher.publish("homeassistant/status", "online")
        await settle(watcher)
    finally:
        await output.stop()
    assert [m.topic for m in watcher.messages if m.topic.startswith("homeassistant/")] == [
        "homeassistant/status"  # only what the test itself sent
    ]


async def test_availability_online_on_connect_offline_on_stop(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    output = make_output(mosquitto)
    await output.start(storage)
    try:
        await watcher.wait_for(
            lambda ms: [m.text for m in ms if m.topic == "kamstrup382/status"] == ["online"]
        )
        assert output.connected.is_set()
    finally:
        await output.stop()
    statuses = await watcher.wait_count("kamstrup382/status", 2)
    assert [m.text for m in statuses] == ["online", "offline"]


async def test_a_failed_readout_makes_the_meter_unavailable_until_the_next_reading(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    output = make_output(mosquitto, ["house", "garage"])
    await output.start(storage)
    topic = "kamstrup382/house/availability"
    try:
        await store_and_publish(storage, output, [reading("house", 0), reading("garage", 0)])
        await watcher.wait_count(topic, 1)
        # house failed; garage was not read in its slot (missed): that says nothing about it
        missed = failure("garage", 1, "missed")
        await store_and_publish(storage, output, [], [failure("house", 1), missed])
        await watcher.wait_count(topic, 2)
        await store_and_publish(storage, output, [reading("house", 2), reading("garage", 2)])
        await watcher.wait_count(topic, 3)
        await watcher.wait_count("kamstrup382/garage/state", 2)
    finally:
        await output.stop()
    await settle(watcher)
    assert [m.text for m in watcher.on(topic)] == ["online", "offline", "online"]
    assert [m.text for m in watcher.on("kamstrup382/garage/availability")] == ["online"]
    # nor after a restart, where availability is derived from the stored status
    again = make_output(mosquitto, ["house", "garage"])
    await asyncio.to_thread(storage.record, [], [failure("garage", 3, "missed")])
    await again.start(storage)
    try:
        await watcher.wait_count("kamstrup382/garage/availability", 2)
    finally:
        await again.stop()
    await settle(watcher)
    assert [m.text for m in watcher.on("kamstrup382/garage/availability")] == ["online"] * 2


LAST_WILL_SCRIPT = """
import asyncio, sys
from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.storage.url import open_storage

async def main() -> None:
    output = MqttOutput.from_config({"url": sys.argv[1], "client_id": "k382-doomed"}, ["house"])
    await output.start(open_storage(sys.argv[2]))
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_collector_dies(
    mosquitto: MosquittoBroker, watcher: Watcher, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAST_WILL_SCRIPT,
        mosquitto.url,
        f"sqlite:///{tmp_path / 'k.sqlite'}",
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    try:
        await watcher.wait_for(
            lambda ms: [m.text for m in ms if m.topic == "kamstrup382/status"] == ["online"]
        )
        process.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
        statuses = await watcher.wait_count("kamstrup382/status", 2)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert [m.text for m in statuses] == ["online", "offline"]
    async with Watcher(
        mosquitto.host, mosquitto.port, ["kamstrup382/status"], client_id="late"
    ) as late:
        retained = await late.wait_count("kamstrup382/status", 1)
    assert retained[0].text == "offline" and retained[0].retain


async def test_mqtt_5_and_credentials_from_the_environment(
    mosquitto: MosquittoBroker, watcher: Watcher, storage: Storage
) -> None:
    from kamstrup382.collector.config import parse_config
    from kamstrup382.outputs import build_outputs

    config = parse_config(
        {
            "meters": [{"name": "house", "port": "socket://127.0.0.1:4001"}],
            "storage": {"url": "sqlite:///unused.sqlite"},
            "mqtt": {
                "url": mosquitto.url,
                "protocol": "5",
                "username": "k382",
                "reconnect_delay": 0.05,
                "topic_prefix": "site/meters",
            },
        },
        env={"K382_MQTT_PASSWORD": "from-env", "K382_MQTT_QOS": "2"},
    )
    (output,) = build_outputs(config.sections, [m.name for m in config.meters])
    assert isinstance(output, MqttOutput)
    assert output.settings.password == "from-env"
    assert output.settings.qos == 2
    assert output.settings.protocol == "5"
    async with Watcher(mosquitto.host, mosquitto.port, ["site/#"], client_id="w5") as site:
        await output.start(storage)
        try:
            await store_and_publish(storage, output, [reading("house", 0)])
            (state,) = await site.wait_count("site/meters/house/state", 1)
        finally:
            await output.stop()
    assert state.json()["registers"]["energy"]["value"] == 53
    assert state.qos == 1  # the watcher subscribed with QoS 1: the broker downgrades 2 to 1
    assert "k382" in mosquitto.log_tail(200)  # the username reached the broker


async def test_credentials_are_required_and_the_outbox_waits_for_good_ones(
    mosquitto_auth: MosquittoBroker, storage: Storage
) -> None:
    broker = mosquitto_auth
    wrong = make_output(broker, username="k382", password="wrong", stop_timeout=0.2)
    await wrong.start(storage)
    try:
        await store_and_publish(storage, wrong, [reading("house", 0)])
        while wrong.last_error is None:  # noqa: ASYNC110 - polling the output's own state
            await asyncio.sleep(0.02)
    finally:
        await wrong.stop()
    assert wrong.connections == 0
    assert "not authori" in wrong.last_error.lower() or "password" in wrong.last_error.lower()
    assert len(await asyncio.to_thread(storage.outbox_pending)) == 1
    async with Watcher(
        broker.host, broker.port, ["kamstrup382/#"], username="k382", password="s3cret"
    ) as watcher:
        right = make_output(broker, username="k382", password="s3cret")
        await right.start(storage)
        try:
            (state,) = await watcher.wait_count("kamstrup382/house/state", 1)
        finally:
            await right.stop()
    assert state.json()["registers"]["energy"]["value"] == 53


async def test_tls_insecure_accepts_an_unknown_ca(
    mosquitto_tls: MosquittoBroker, storage: Storage
) -> None:
    broker = mosquitto_tls
    async with Watcher(broker.host, broker.port, ["kamstrup382/#"], client_id="tlsi") as plain:
        output = MqttOutput.from_config(
            {"url": broker.tls_url, "insecure": True, "reconnect_delay": 0.05}, ["house"]
        )
        await output.start(storage)
        try:
            await store_and_publish(storage, output, [reading("house", 0)])
            await plain.wait_count("kamstrup382/house/state", 1)
        finally:
            await output.stop()
    assert output.connections == 1


async def test_tls_with_the_brokers_ca(mosquitto_tls: MosquittoBroker, storage: Storage) -> None:
    broker = mosquitto_tls
    assert broker.ca_file is not None
    async with Watcher(broker.host, broker.port, ["kamstrup382/#"], client_id="tlsw") as plain:
        output = MqttOutput.from_config(
            {"url": broker.tls_url, "ca_file": str(broker.ca_file), "reconnect_delay": 0.05},
            ["house"],
        )
        await output.start(storage)
        try:
            await store_and_publish(storage, output, [reading("house", 0)])
            (state,) = await plain.wait_count("kamstrup382/house/state", 1)
        finally:
            await output.stop()
    assert state.json()["registers"]["customer_number"]["value"] == "00054042"
    assert output.connections == 1


# paho-mqtt drops the socket of a failed TLS handshake without closing it (ResourceWarning)
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning"
)
async def test_tls_refuses_a_broker_it_does_not_trust(
    mosquitto_tls: MosquittoBroker, storage: Storage
) -> None:
    """Without the CA the certificate is refused: nothing is published, all stays queued."""
    output = MqttOutput.from_config(
        {"url": mosquitto_tls.tls_url, "reconnect_delay": 0.05, "stop_timeout": 0.2}, ["house"]
    )
    await output.start(storage)
    try:
        await store_and_publish(storage, output, [reading("house", 0)])
        while output.last_error is None:  # noqa: ASYNC110 - polling the output's own state
            await asyncio.sleep(0.02)
    finally:
        await output.stop()
    assert "certificate" in output.last_error.lower()
    assert output.connections == 0
    assert len(await asyncio.to_thread(storage.outbox_pending)) == 1


async def test_publish_never_raises_or_blocks_without_a_broker(
    mosquitto: MosquittoBroker, storage: Storage
) -> None:
    mosquitto.kill()
    output = make_output(mosquitto, stop_timeout=0.2)
    await output.start(storage)
    try:
        for index in range(5):
            await asyncio.wait_for(
                store_and_publish(
                    storage, output, [reading("house", index)], [failure("garage", index)]
                ),
                PATIENCE,
            )
    finally:
        await output.stop()
    assert output.connections == 0
    assert "refused" in (output.last_error or "").lower()
    assert len(await asyncio.to_thread(storage.outbox_pending)) == 5
