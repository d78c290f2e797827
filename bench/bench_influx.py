"""Measure (not a test): how fast the InfluxDB output empties a backlog of its outbox queue.

N readings of 100 meters are queued in a SQLite outbox for the ``influxdb`` output, then an
InfluxOutput writes them to a local InfluxDB 1.x (Debian's influxd, started as the tests start
it), timed from start to an empty queue; every point is counted in InfluxDB afterwards.

The floor: the same points, encoded beforehand, POSTed to ``/write`` in batches of the same
size by a bare httpx client, one after the other, nothing else (no storage, no claims, no
encoding): what the server takes from one writer. The ratio says what the outbox and the
output cost on top of that.

    python3 bench/bench_influx.py 100000 [batch_size]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the server fixture of the tests

import httpx
from tests.fixtures.influxdb import InfluxServer
from tests.outputs.helpers import reading

from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.outputs.influxdb_line import encode_point
from kamstrup382.outputs.influxdb_series import reading_point
from kamstrup382.storage.url import open_storage

NEEDED = 10_000 / 900  # readings per second for 10,000 meters every 15 minutes


def _count(server: InfluxServer, db: str) -> int:
    series = server.query("SELECT count(energy_kwh) FROM kamstrup382", db)
    return int(series[0]["values"][0][1]) if series else 0


async def _output(server: InfluxServer, directory: Path, count: int, batch: int) -> float:
    readings = [reading(f"m{i % 100}", i // 100) for i in range(count)]
    with open_storage(f"sqlite:///{directory / 'r.sqlite'}") as storage:
        storage.record(readings, outbox=["influxdb"])
        output = InfluxOutput.from_config(
            {"url": server.url, "database": "output", "batch_size": batch}
        )
        wall = time.perf_counter()
        await output.start(storage)
        while storage.outbox_backlog("influxdb")[0]:  # noqa: ASYNC110 - polling the storage
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - wall
        await output.stop()
    if _count(server, "output") != count:
        raise SystemExit(f"the output wrote {_count(server, 'output')} points, not {count}")
    return wall


async def _floor(server: InfluxServer, count: int, batch: int) -> float:
    lines = [
        encode_point(reading_point(reading(f"m{i % 100}", i // 100), measurement="kamstrup382",
                                   precision="ns"))
        for i in range(count)
    ]  # fmt: skip
    bodies = [
        "".join(line + "\n" for line in lines[start : start + batch]).encode()
        for start in range(0, count, batch)
    ]
    url = f"{server.url}/write?db=floor&precision=ns"
    async with httpx.AsyncClient(timeout=60) as client:
        wall = time.perf_counter()
        for body in bodies:
            answer = await client.post(url, content=body)
            answer.raise_for_status()
        wall = time.perf_counter() - wall
    if _count(server, "floor") != count:
        raise SystemExit(f"the floor wrote {_count(server, 'floor')} points, not {count}")
    return wall


async def measure(count: int, batch: int) -> str:
    directory = Path(tempfile.mkdtemp(prefix="k382-influx-"))
    with InfluxServer(directory / "influxdb") as server:
        server.query("CREATE DATABASE output")
        server.query("CREATE DATABASE floor")
        floor = await _floor(server, count, batch)
        output = await _output(server, directory, count, batch)
    rate, floor_rate = count / output, count / floor
    return (
        f"{count} readings, batches of {batch}: the output {output:.2f} s = {rate:.0f} "
        f"readings/s; a bare POST of the same points {floor:.2f} s = {floor_rate:.0f} points/s; "
        f"ratio {rate / floor_rate:.2f}; {rate / NEEDED:.0f} x the rate of 10,000 meters "
        "every 15 min"
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    count = int(args[0]) if args else 100_000
    batch = int(args[1]) if len(args) > 1 else 5000
    print(asyncio.run(measure(count, batch)))


if __name__ == "__main__":
    main()
