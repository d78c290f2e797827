"""Benchmark: a collector's memory while its SQLite storage is full, with and without a bound.

    python bench/bench_spill.py                      # 500 meters, 1 s slots, 60 s, three runs
    python bench/bench_spill.py --meters 200 --seconds 30

The meters are emulated by ``k382 emulate`` in another process (speed x200, so that this
process holds only the collector). This process runs a collector (``Collector.run``, 1 s
slots) into a SQLite database that is full (``max_page_count`` at its size, filled until
SQLite refuses a row), three times: into a healthy database (the baseline), into the full one
with ``storage.max_pending`` 1,000, and into the full one without a bound that matters
(10,000,000). Every 5 s it prints the resident set size (MiB) and the number of readings and
failures alive in the process (after a garbage collection); at the end, how many results the
spill journal holds. The figures measured are in docs/collector.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from kamstrup382.collector import Collector, parse_config
from kamstrup382.storage import FailureRecord, ReadingRecord
from kamstrup382.storage.url import open_storage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.storage.full import full_sqlite


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def records_alive() -> int:
    gc.collect()
    return sum(isinstance(o, ReadingRecord | FailureRecord) for o in gc.get_objects())


def start_emulator(meters: int) -> tuple[subprocess.Popen[str], list[str]]:
    command = [sys.executable, "-m", "kamstrup382", "emulate", "--tcp", "127.0.0.1:0"]
    command += ["--meters", str(meters), "--speed", "200", "--delay", "0.02"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    emulator = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert emulator.stdout is not None
    for _ in range(20):
        found = re.search(r"socket://127\.0\.0\.1:(\d+)-(\d+)", emulator.stdout.readline())
        if found:
            first, last = int(found.group(1)), int(found.group(2))
            return emulator, [f"socket://127.0.0.1:{p}" for p in range(first, last + 1)]
    emulator.kill()
    raise RuntimeError("k382 emulate printed no port range")


async def run(ports: list[str], url: str, max_pending: int, seconds: float, work: Path) -> str:
    meters = "".join(f'[[meters]]\nname = "m{i}"\nport = "{p}"\n' for i, p in enumerate(ports))
    text = f'[storage]\nurl = "{url}"\nmax_pending = {max_pending}\nretry_delay = 0.5\n'
    text += f'spill_dir = "{work}"\n[collector]\ninterval = "1s"\nanswer_timeout = 0.3\n'
    config = parse_config(tomllib.loads(text + meters), env={})
    samples: list[tuple[float, int]] = []
    with open_storage(url) as storage:
        collector = Collector(config, storage)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.sleep(5)
            samples.append((round(rss_mib(), 1), records_alive()))
        stop.set()
        await task
    journal = collector.spill.count()
    return f"(RSS MiB, records alive) every 5 s: {samples}; in the journal at exit: {journal}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    emulator, ports = start_emulator(args.meters)
    try:
        for name, full, max_pending in (
            ("healthy", False, 1000),
            ("full, max_pending 1000", True, 1000),
            ("full, max_pending 10000000", True, 10_000_000),
        ):
            work = Path(tempfile.mkdtemp(prefix="k382-spill-"))
            db = work / "r.sqlite"
            url = full_sqlite(db) if full else f"sqlite:///{db}"
            line = asyncio.run(run(ports, url, max_pending, args.seconds, work))
            print(f"{args.meters} meters, {name}: {line}", flush=True)
    finally:
        emulator.terminate()
        emulator.wait()


if __name__ == "__main__":
    main()
