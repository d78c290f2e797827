"""Benchmark: one collector process reading N TCP-emulated meters at the true 300 baud.

    python bench/bench_collector.py                 # N = 100, 1000, 10000
    python bench/bench_collector.py --meters 1000   # one N (repeat the flag for several)

The emulator runs as a separate process (``k382 emulate --tcp 127.0.0.1:PORT --meters N
--speed 1``), one TCP port per meter. This process runs one collector cycle over all N meters
(``Collector.run_once``, one line per meter, temporary SQLite storage) and reports:

- ratio: cycle time / the physical floor of one readout, where the floor is the request and
  the reply on the wire at 30 characters a second plus the emulator's answer delay
  (5 + 167 characters = 5.733 s + delay). All meters are read in parallel, so 1.00 is the limit.
- CPU seconds of this (collector) process per readout (``resource.getrusage``), everything
  included: connecting, the reader, decoding, storage, the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kamstrup382.collector import Collector
from kamstrup382.collector.collector import raise_file_limit
from kamstrup382.collector.config import parse_config
from kamstrup382.protocol import REQUEST
from kamstrup382.storage.url import open_storage

CHARS_PER_SECOND = 30.0  # 300 baud, 7E1: 10 bits a character


@dataclass(frozen=True)
class Result:
    meters: int
    read: int
    failed: int
    cycle: float
    floor: float
    cpu: float

    @property
    def ratio(self) -> float:
        return self.cycle / self.floor

    @property
    def cpu_per_readout(self) -> float:
        return self.cpu / max(self.read, 1)


def _more_files() -> None:
    """Room for N listening and N accepted sockets in the emulator (inherits it; needs root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (1 << 20, 262_144, 65_536, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, soft), max(wanted, hard)))
            return
        except (ValueError, OSError):
            continue


def start_emulator(count: int, port: int, delay: float) -> subprocess.Popen[bytes]:
    k382 = shutil.which("k382")
    command = [k382] if k382 else [sys.executable, "-m", "kamstrup382"]
    command += [
        "emulate",
        "--tcp",
        f"127.0.0.1:{port}",
        "--meters",
        str(count),
        "--speed",
        "1",
        "--delay",
        str(delay),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"emulator exited with {proc.returncode}: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"emulator not listening on port {port} after {timeout} s")


async def one_cycle(count: int, port: int, delay: float, folder: Path) -> Result:
    url = f"sqlite:///{folder / f'bench-{count}.sqlite'}"
    meters = [{"name": f"m{i:05d}", "port": f"socket://127.0.0.1:{port + i}"} for i in range(count)]
    config = parse_config(
        {
            "storage": {"url": url},
            "collector": {"batch_size": 1000, "flush_interval": 0.5, "retries": 0},
            "meters": meters,
        },
        env={},
    )
    storage = open_storage(url)
    try:
        async with Collector(config, storage, collector_id="bench") as collector:
            before = resource.getrusage(resource.RUSAGE_SELF)
            result = await collector.run_once()
            after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        storage.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    reply = max((len(r.raw) for r in result.readings), default=167)
    floor = (len(REQUEST) + reply) / CHARS_PER_SECOND + delay
    for line in result.summary()[:5]:
        print(f"  not read: {line}", file=sys.stderr)
    return Result(count, len(result.readings), len(result.failures), result.duration, floor, cpu)


def run(count: int, port: int, delay: float) -> Result:
    emulator = start_emulator(count, port, delay)
    try:
        wait_for_port(port + count - 1, emulator)
        with tempfile.TemporaryDirectory(prefix="k382-bench-") as folder:
            return asyncio.run(one_cycle(count, port, delay, Path(folder)))
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--meters",
        type=int,
        action="append",
        help="N meters (repeatable; default 100, 1000 and 10000)",
    )
    parser.add_argument("--port", type=int, default=21000, help="first emulator TCP port")
    parser.add_argument(
        "--delay", type=float, default=0.02, help="emulator answer delay in s (spec: 0.02-0.6)"
    )
    args = parser.parse_args()
    counts = args.meters or [100, 1000, 10_000]
    _more_files()
    limit = raise_file_limit()
    print(f"collector pid {os.getpid()}, open-file limit {limit}, {os.cpu_count()} CPUs")
    print(
        f"{'meters':>7} {'read':>7} {'failed':>7} {'cycle s':>8} {'floor s':>8} "
        f"{'ratio':>6} {'CPU ms/readout':>15}"
    )
    results = []
    for count in counts:
        result = run(count, args.port, args.delay)
        results.append(result)
        print(
            f"{result.meters:>7} {result.read:>7} {result.failed:>7} {result.cycle:>8.2f} "
            f"{result.floor:>8.3f} {result.ratio:>6.3f} {result.cpu_per_readout * 1000:>15.3f}",
            flush=True,
        )
    if any(r.meters >= 10_000 for r in results):
        worst = max(r.ratio for r in results if r.meters >= 10_000)
        print(f"target at 10,000 meters: ratio <= 1.10 -> {'met' if worst <= 1.10 else 'NOT met'}")
    return 0 if all(r.failed == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
