"""Several collectors on one PostgreSQL database drain one outbox through a real mosquitto:
each reading arrives exactly once, and each meter's readings in the order they were stored,
whichever collector stored them; a publisher that died holding meters is taken over."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.storage import ReadingRecord, Storage
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import PATIENCE, Watcher, reading, settle

pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres]

METERS = [f"m{i:02d}" for i in range(12)]
ROUNDS = 15
COLLECTORS = 3


@pytest.fixture
def stores(postgres_db_url: str) -> Iterator[list[Storage]]:
    """One storage connection per collector, all on one database."""
    opened = [open_storage(postgres_db_url) for _ in range(COLLECTORS)]
    yield opened
    for store in opened:
        store.close()


@pytest.fixture
async def watcher(mosquitto: MosquittoBroker) -> AsyncIterator[Watcher]:
    async with Watcher(mosquitto.host, mosquitto.port, ["kamstrup382/#", "k382-test/#"]) as w:
        yield w


def live_read_at(watcher: Watcher) -> list[tuple[str, str]]:
    """(meter, read_at) of every state message as routed when published, in arrival order."""
    return [
        (m.topic.split("/")[1], m.json()["read_at"])
        for m in watcher.messages
        if m.topic.endswith("/state") and not m.retain
    ]


def key(record: ReadingRecord) -> tuple[str, str]:
    return record.meter, record.read_at.isoformat()


async def test_collectors_sharing_an_outbox_publish_each_reading_once_in_order(
    mosquitto: MosquittoBroker, watcher: Watcher, stores: list[Storage]
) -> None:
    outputs = [
        MqttOutput.from_config(
            {
                "url": mosquitto.url,
                "client_id": f"k382-test-collector-{index}",
                "discovery": False,
                "batch_size": 4,  # many short rounds: the collectors compete for the meters
                "timeout": 2,
                "outbox_lease": 4,
                "reconnect_delay": 0.05,
                "reconnect_max": 0.2,
            },
            METERS,
        )
        for index in range(COLLECTORS)
    ]
    # a publisher died mid-round holding three meters with readings from before: the outputs
    # must take them over once its claims expire, before what was stored after
    dead = [reading(m, 0) for m in METERS[:3]]
    await asyncio.to_thread(stores[0].record, dead, outbox=True)
    held = await asyncio.to_thread(
        stores[0].outbox_pending, 10, holder="dead", lease=timedelta(seconds=2)
    )
    assert sorted(r.meter for _, r in held) == METERS[:3]
    expected = [key(r) for r in dead]

    async def store(index: int, records: list[ReadingRecord]) -> None:
        """What collector ``index``'s writer does with one batch."""
        await asyncio.to_thread(stores[index].record, records, outbox=True)
        await outputs[index].publish(records, [])

    for index, output in enumerate(outputs):
        await output.start(stores[index])
    try:
        for slot in range(1, ROUNDS + 1):
            # each slot the meters are read by other collectors than in the slot before
            batches: list[list[ReadingRecord]] = [[] for _ in range(COLLECTORS)]
            for number, meter in enumerate(METERS):
                batches[(number + slot) % COLLECTORS].append(reading(meter, slot))
            await asyncio.gather(*(store(i, batch) for i, batch in enumerate(batches)))
            expected += [key(r) for batch in batches for r in batch]
        await watcher.wait_for(lambda ms: len(live_read_at(watcher)) >= len(expected))

        async def empty() -> None:
            while await asyncio.to_thread(stores[0].outbox_pending, 1):  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await asyncio.wait_for(empty(), PATIENCE)
        await settle(watcher)
    finally:
        for output in outputs:
            await output.stop()
    received = live_read_at(watcher)
    repeated = [item for item, count in Counter(received).items() if count > 1]
    assert repeated == []  # nothing published twice by two collectors
    assert sorted(received) == sorted(expected)  # nothing lost
    per_meter: dict[str, list[str]] = defaultdict(list)
    for meter, read_at in received:
        per_meter[meter].append(read_at)
    for meter in METERS:
        assert per_meter[meter] == sorted(per_meter[meter]), meter  # stored order, per meter
    assert sum(output.published for output in outputs) == len(expected)
