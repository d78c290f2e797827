"""Several collectors on one PostgreSQL database share the InfluxDB output's queue: each reading
is written by one of them, each meter's in order; an outage of InfluxDB in the middle loses
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage
from tests.fixtures.influxdb import InfluxServer

from .helpers import PATIENCE, reading
from .test_influxdb import QUERY, make_output, nanoseconds

pytestmark = pytest.mark.postgres

METERS = [f"m{index:02d}" for index in range(10)]


@pytest.fixture
def stores(postgres_db_url: str) -> Iterator[list[Storage]]:
    opened = [open_storage(postgres_db_url) for _ in range(3)]
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


async def test_three_collectors_write_each_reading_once(
    influxdb: InfluxServer, stores: list[Storage]
) -> None:
    outputs = [
        make_output(influxdb, client_id=f"collector-{index}", batch_size=7)
        for index in range(len(stores))
    ]
    for output, store in zip(outputs, stores, strict=True):
        await output.start(store)
    readings = []
    try:
        for slot in range(12):
            if slot == 6:  # InfluxDB away for a while: the readings wait, nothing is lost
                influxdb.stop()
            # each slot's meters read by a different collector than the slot before
            for index, store in enumerate(stores):
                batch = [
                    reading(meter, slot)
                    for number, meter in enumerate(METERS)
                    if (number + slot) % len(stores) == index
                ]
                readings += batch
                await asyncio.to_thread(store.record, batch, outbox=["influxdb", "mqtt"])
                await outputs[index].publish(batch, [])
            if slot == 6:
                await asyncio.wait_for(some_unreachable(outputs), PATIENCE)
                influxdb.start()

        async def empty() -> None:
            while (await asyncio.to_thread(stores[0].outbox_backlog, "influxdb"))[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await asyncio.wait_for(empty(), PATIENCE)
    finally:
        for output in outputs:
            await output.stop()
    rows = influxdb.rows(QUERY, "k382")
    assert sorted((row["meter"], row["time"]) for row in rows) == sorted(
        (r.meter, nanoseconds(r)) for r in readings
    )
    # each entry written by one collector: the counts add up to the readings, no more
    assert sum(output.written for output in outputs) == len(readings)
    assert sum(1 for output in outputs if output.written) >= 2  # the work was shared
    # MQTT's queue was left as it was: the same readings wait there for their own output
    assert stores[0].outbox_backlog("mqtt")[0] == len(readings)


async def some_unreachable(outputs: list[InfluxOutput]) -> None:
    while not any(output.state == "unreachable" for output in outputs):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
