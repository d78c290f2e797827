"""Measure (not a test): how fast the MQTT output empties a backlog in the outbox.

N readings of 100 meters are queued in a SQLite outbox, then an MqttOutput publishes them to a
local mosquitto with QoS 1 (each acknowledged by the broker), timed from start to an empty
outbox. The figure that matters is the ratio to what a fleet needs: 10,000 meters read every
15 minutes produce 11.1 readings per second.

    python3 bench/bench_mqtt_drain.py 20000
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the broker fixture of the tests

from tests.fixtures.mosquitto import MosquittoBroker
from tests.outputs.helpers import reading

from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.storage.url import open_storage

NEEDED = 10_000 / 900  # readings per second for 10,000 meters every 15 minutes


async def measure(count: int) -> str:
    directory = Path(tempfile.mkdtemp(prefix="k382-drain-"))
    meters = [f"m{index}" for index in range(100)]
    with (
        MosquittoBroker(directory / "mosquitto") as broker,
        open_storage(f"sqlite:///{directory / 'r.sqlite'}") as storage,
    ):
        storage.record([reading(meters[i % 100], i // 100) for i in range(count)], outbox=True)
        output = MqttOutput.from_config({"url": broker.url, "batch_size": 500}, meters)
        wall, cpu = time.perf_counter(), time.process_time()
        await output.start(storage)
        while storage.outbox_pending(1):  # noqa: ASYNC110 - polling the storage
            await asyncio.sleep(0.01)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await output.stop()
    rate = count / wall
    return (
        f"{count} readings in {wall:.2f} s: {rate:.0f} readings/s, "
        f"{cpu / count * 1e6:.0f} us CPU each (publisher process); "
        f"{rate / NEEDED:.0f} x the rate of 10,000 meters every 15 min"
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(asyncio.run(measure(int(args[0]) if args else 20_000)))


if __name__ == "__main__":
    main()
