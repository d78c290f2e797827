"""Benchmark: one collector process reading N TCP-emulated meters at the true 300 baud.

    python bench/bench_collector.py                 # N = 100, 1000, 10000
    python bench/bench_collector.py --meters 1000   # one N (repeat the flag for several)
    python bench/bench_collector.py --host 127.0.0.2  # when other programs crowd 127.0.0.1's ports
    python bench/bench_collector.py --loop asyncio    # asyncio's own event loop, not uvloop
    python bench/bench_collector.py --host 127.0.0.2 --port 20000 --meters 10000
    python bench/bench_collector.py --hot-path      # one readout's work, no loop, no emulators

(``--port``: with 10,000 meters the four emulator processes each look for 2,500 consecutive
free ports in one range at random and may not find them; a fixed first port avoids that.)

The emulated meters run in separate processes (``kamstrup382.emulator.Emulator`` at
``speed=1``, a constant load, at most ``--per-emulator`` meters each, since every meter takes a
listening and an accepted socket there), one TCP port per meter. They write the characters due
in groups at most every ``--write-interval`` seconds, as a TCP gateway packetises a serial line;
the last character always goes out at its exact time, so the floor is unchanged. This process
runs two collector cycles over all N meters (``Collector.run_once(at=...)``, one line per meter,
no retries of its own, temporary SQLite storage, an interval of one minute), as the scheduler
runs two slots: the meters are connected ``CONNECT_AHEAD`` (5) seconds before the start ``at``
and every request goes out at ``at``.

- **first**: the first cycle on a fresh database. A meter's first reading is confirmed by three
  agreeing telegrams (``collector/history.py``), so each meter is read three times in it (the
  collector gives every reader the retries that takes): its ratio is about three readouts'.
- **steady**: the next slot's cycle, with the history of the first in memory (and, with
  ``keep_connected``, the connections open): one readout per meter, as every later slot. The
  targets (ratio <= 1.10, collector CPU <= 0.45 ms a readout) are this cycle's.

The collector runs with the open-file limit raised, the garbage collector's first threshold at
50,000 and a 1 ms thread switch interval (``kamstrup382.collector.runtime``), as
``k382 collect`` does. It reports:

- ratio: cycle time (from ``at`` until the last readout is stored) / the physical floor of one
  readout, where the floor is the request and
  the reply on the wire at 30 characters a second plus the emulator's answer delay
  (5 + 167 characters = 5.733 s + delay). All meters are read in parallel, so 1.00 is the limit.
  Shown only when every meter was read.
- CPU seconds of this (collector) process per readout (a meter read in the cycle, all its
  attempts; ``resource.getrusage``), everything included: connecting, the reader, decoding,
  judging, storage, the event loop; and the CPU seconds of the collector and of the emulator
  processes during the cycle (they share the machine), connecting ahead included; of the
  collector's, the system's share ("of it sys": the kernel's work on its sockets).
- attempts: the telegrams the cycle's readings took, together (3 per meter in the first).
- last request s: seconds from ``at`` until the last request went out (``read_at`` is the time
  of the request): the time the event loop takes to wake the readers and send the requests.
- tail s: cycle - last request - floor: how long the cycle ran on after the last reply's last
  character was due, the collector finishing the readouts whose replies all end within the
  spread of the requests (about ``meters`` x the work at a reply's end).

The figures measured, and the targets, are in docs/collector.md.

``--keep-connected`` (the default) runs the collector with ``keep_connected = true``: the
connections stay open after the cycle, as a collector of that size keeps them from slot to slot,
and are closed when the collector closes, after the cycle is measured.

The collector's event loop (``--loop``): ``uvloop`` (``kamstrup382.reader.new_event_loop``,
the default where uvloop is installed) or ``asyncio``'s own. The emulators run on uvloop too
where it is installed, as ``k382 emulate`` does (``--emulator-loop asyncio``:
asyncio's, more emulator CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kamstrup382.collector import Collector
from kamstrup382.collector.config import parse_config
from kamstrup382.collector.history import History, observation_of
from kamstrup382.collector.records import reading_record
from kamstrup382.collector.runtime import collector_runtime, raise_file_limit
from kamstrup382.collector.schedule import CONNECT_AHEAD, next_slot
from kamstrup382.protocol import REQUEST, add_parity
from kamstrup382.reader import new_event_loop
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.session import Readout, Session
from kamstrup382.storage import ReadingRecord
from kamstrup382.storage.url import open_storage

CHARS_PER_SECOND = 30.0  # 300 baud, 7E1: 10 bits a character
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
SPEC_EXAMPLE = Path(__file__).resolve().parent.parent / "src/kamstrup382/data/spec-example.bin"
#: The meters' interval, in seconds: the steady-state cycle is the next slot's (a reading is
#: stored once per meter and slot).
INTERVAL = 60


@dataclass(frozen=True)
class Result:
    """One cycle over every meter: the first (a fresh database) or the steady state."""

    cycle_kind: str  # "first" or "steady"
    meters: int
    read: int
    failed: int
    #: Attempts the readings took, together (a first reading is confirmed by three).
    attempts: int
    cycle: float
    floor: float
    cpu: float
    #: Of ``cpu``, the system's share (the kernel's work for this process: the sockets).
    system_cpu: float
    emulator_cpu: float
    #: Seconds from the start to the last request sent (connected ahead: close to 0); with
    #: confirmations, the request of the last attempt.
    last_request: float

    @property
    def ratio(self) -> float:
        return self.cycle / self.floor

    @property
    def tail(self) -> float:
        """Seconds the cycle ran on after the last reply's last character was due (the last
        request + the floor): the collector finishing the readouts that ended last."""
        return self.cycle - self.last_request - self.floor

    @property
    def cpu_per_readout(self) -> float:
        """Collector CPU seconds per readout (one meter read in the cycle, all its attempts)."""
        return self.cpu / max(self.meters, 1)


#: The emulator process: serves N meters on consecutive free ports at the true 300 baud and
#: prints their ports as one JSON line; on SIGUSR1 prints its CPU seconds so far; stops on
#: SIGTERM.
EMULATOR = """
import asyncio, json, resource, signal, sys
from kamstrup382.emulator import ConstantLoad, Emulator
from kamstrup382.reader import new_event_loop
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.session import Readout, Session
from kamstrup382.storage import ReadingRecord

def cpu() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(usage.ru_utime + usage.ru_stime, flush=True)

async def main(count: int, delay: float, group: float, port: int, host: str) -> None:
    async with Emulator(
        meters=count, transport="tcp", host=host, port=port, speed=1.0, delay=delay,
        write_interval=group, load=ConstantLoad(1.5),
    ) as emu:
        print(json.dumps(emu.ports), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, cpu)
        await stop.wait()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
count, delay, group, port, host, loop = sys.argv[1:]
with asyncio.Runner(loop_factory=new_event_loop if loop == "uvloop" else None) as runner:
    runner.run(main(int(count), float(delay), float(group), int(port), host))
"""


def start_emulators(
    count: int,
    *,
    per_process: int,
    delay: float,
    group: float,
    port: int = 0,
    host: str = "127.0.0.1",
    loop: str = "uvloop" if HAVE_UVLOOP else "asyncio",
) -> tuple[list[subprocess.Popen[str]], list[str]]:
    """Emulator processes serving ``count`` meters in all; their processes and ports."""
    procs: list[subprocess.Popen[str]] = []
    ports: list[str] = []
    try:
        for first in range(0, count, per_process):
            size = min(per_process, count - first)
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-c", EMULATOR),
                    *(str(size), str(delay), str(group), str(port + first if port else 0)),
                    *(host, loop),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"emulator exited with {proc.wait()} (see its stderr)")
            ports += json.loads(line)
    except BaseException:
        stop_emulators(procs)
        raise
    return procs, ports


def emulator_cpu(procs: list[subprocess.Popen[str]]) -> float:
    """CPU seconds the emulator processes have used so far, together."""
    for proc in procs:
        proc.send_signal(signal.SIGUSR1)
    total = 0.0
    for proc in procs:
        assert proc.stdout is not None
        total += float(proc.stdout.readline())
    return total


def stop_emulators(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def measure(
    kind: str,
    collector: Collector,
    at: datetime,
    emulators: list[subprocess.Popen[str]],
    delay: float,
) -> Result:
    """Run one cycle whose requests go out at ``at``, and measure it."""
    emulated_before = emulator_cpu(emulators)
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = await collector.run_once(at=at)
    after = resource.getrusage(resource.RUSAGE_SELF)
    emulated = emulator_cpu(emulators) - emulated_before
    system = after.ru_stime - before.ru_stime
    cpu = (after.ru_utime - before.ru_utime) + system
    reply = max((len(r.raw) for r in result.readings), default=167)
    floor = (len(REQUEST) + reply) / CHARS_PER_SECOND + delay
    for line in result.summary()[:5]:
        print(f"  not read ({kind} cycle): {line}", file=sys.stderr)
    last = max(((r.read_at - at).total_seconds() for r in result.readings), default=0.0)
    return Result(
        kind,
        len(collector.config.meters),
        len(result.readings),
        len(result.failures),
        sum(r.attempts for r in result.readings),
        result.duration,
        floor,
        cpu,
        system,
        emulated,
        last,
    )


async def two_cycles(
    ports: list[str],
    emulators: list[subprocess.Popen[str]],
    delay: float,
    folder: Path,
    *,
    keep_connected: bool,
) -> tuple[Result, Result]:
    """The first cycle on a fresh database, then the next slot's (the steady state)."""
    count = len(ports)
    url = f"sqlite:///{folder / f'bench-{count}.sqlite'}"
    meters = [{"name": f"m{i:05d}", "port": port} for i, port in enumerate(ports)]
    config = parse_config(
        {
            "storage": {"url": url},
            "collector": {
                "interval": f"{INTERVAL}s",
                "batch_size": 1000,
                "flush_interval": 0.5,
                "retries": 0,
                "keep_connected": keep_connected,
            },
            "meters": meters,
        },
        env={},
    )
    storage = open_storage(url)
    try:
        async with Collector(config, storage, collector_id="bench") as collector:
            # as on schedule: claimed and connected ahead, the requests at ``at``
            at = collector.clock.now() + timedelta(seconds=CONNECT_AHEAD)
            first = await measure("first", collector, at, emulators, delay)
            # the next slot that leaves time to connect ahead (without keep_connected)
            ahead = collector.clock.now() + timedelta(seconds=CONNECT_AHEAD)
            at = next_slot(ahead, config.collector.interval)
            await collector.clock.sleep_until(at - timedelta(seconds=CONNECT_AHEAD))
            steady = await measure("steady", collector, at, emulators, delay)
    finally:
        storage.close()
    return first, steady


def run(
    count: int,
    *,
    per_process: int,
    delay: float,
    group: float,
    port: int,
    host: str,
    loop: str,
    emulator_loop: str = "uvloop" if HAVE_UVLOOP else "asyncio",
    keep_connected: bool = True,
) -> tuple[Result, Result]:
    emulators, ports = start_emulators(
        count,
        per_process=per_process,
        delay=delay,
        group=group,
        port=port,
        host=host,
        loop=emulator_loop,
    )
    factory = new_event_loop if loop == "uvloop" else None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="k382-bench-") as folder,
            collector_runtime(),
            asyncio.Runner(loop_factory=factory) as runner,
        ):
            return runner.run(
                two_cycles(ports, emulators, delay, Path(folder), keep_connected=keep_connected)
            )
    finally:
        stop_emulators(emulators)


def hot_path(rounds: int = 30, batch: int = 200) -> None:
    """The collector's work on one readout without the event loop: the specification's example
    (with its parity bits, as a TCP gateway passes it) fed in 28 chunks to a readout of the
    reader's session, as the benchmark's emulators deliver it, then concluded, judged against
    the meter's last reading (the same values an hour before: no doubt) and made a record.
    Microseconds per readout (CPU time, the best of ``rounds`` batches)."""
    now = datetime.now(UTC)
    reply = add_parity(SPEC_EXAMPLE.read_bytes())
    size = len(reply) // 28 + 1
    chunks = [reply[start : start + size] for start in range(0, len(reply), size)]
    session = Session(line=LineMode.AUTO)

    def readout() -> Readout:
        attempt = session.readout()
        attempt.sent(0.0, now)
        for index, chunk in enumerate(chunks, start=1):
            done = attempt.receive(chunk, index * 0.2)
            assert attempt.timeout_at > 0
        assert done
        return attempt

    history = History()
    first = session.conclude(readout(), "bench", 1)
    history.accepted("m", observation_of(first.meter_values(), now - timedelta(hours=1), None))

    def whole() -> ReadingRecord:
        reading = session.conclude(readout(), "bench", 1)
        judge = history.judge("m", lambda _: now)
        judge(reading)
        accepted = judge.accepted
        assert accepted is not None
        return reading_record("m", now, reading, accepted.at, accepted.values)

    best = {"readout, 28 chunks": 1.0, "+ conclude, judge, record": 1.0}
    for _ in range(rounds):
        for name, work in (("readout, 28 chunks", readout), ("+ conclude, judge, record", whole)):
            start = time.process_time()
            for _ in range(batch):
                work()
            best[name] = min(best[name], (time.process_time() - start) / batch)
    for name, seconds in best.items():
        print(f"{name:<28} {seconds * 1e6:8.1f} us")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--meters",
        type=int,
        action="append",
        help="N meters (repeatable; default 100, 1000 and 10000)",
    )
    parser.add_argument(
        "--per-emulator",
        type=int,
        default=2500,
        help="meters per emulator process (each meter takes two file descriptors there)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address of the meters (127.0.0.2 etc. avoid ports other programs use)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="first TCP port of the meters (consecutive; default: free ports the emulator finds)",
    )
    parser.add_argument(
        "--delay", type=float, default=0.02, help="emulator answer delay in s (spec: 0.02-0.6)"
    )
    parser.add_argument(
        "--write-interval",
        type=float,
        default=0.2,
        help="the emulator writes the characters due at most this often, in s (a gateway's "
        "packetising; the last character is always on time, so the floor is unchanged)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop" if HAVE_UVLOOP else "asyncio",
        help="the collector's event loop (default: uvloop where it is installed)",
    )
    parser.add_argument(
        "--emulator-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop" if HAVE_UVLOOP else "asyncio",
        help="the emulator processes' event loop (default: uvloop where installed, as "
        "`k382 emulate` runs)",
    )
    parser.add_argument(
        "--keep-connected",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the collector's keep_connected setting (default: on; connections stay open "
        "after the cycle and are closed when the collector closes, outside the cycle)",
    )
    parser.add_argument(
        "--hot-path",
        action="store_true",
        help="only the collector's work on one readout, without the event loop and the "
        "emulators (microseconds per readout), then exit",
    )
    args = parser.parse_args()
    if args.hot_path:
        hot_path()
        return 0
    if "uvloop" in (args.loop, args.emulator_loop) and not HAVE_UVLOOP:
        parser.error("uvloop is not installed")
    counts = args.meters or [100, 1000, 10_000]
    limit = raise_file_limit()
    print(
        f"collector pid {os.getpid()}, open-file limit {limit}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, collector event loop: {args.loop}, "
        f"emulators': {args.emulator_loop}, keep_connected: {args.keep_connected}"
    )
    print(
        f"{'meters':>7} {'cycle':>6} {'read':>7} {'failed':>7} {'attempts':>8} {'cycle s':>8} "
        f"{'floor s':>8} {'ratio':>6} {'CPU ms/readout':>15} {'collector CPU s':>16} "
        f"{'of it sys':>9} "
        f"{'emulator CPU s':>15} {'last request s':>15} {'tail s':>7}"
    )
    results: list[Result] = []
    for count in counts:
        cycles = run(
            count,
            per_process=args.per_emulator,
            delay=args.delay,
            group=args.write_interval,
            port=args.port,
            host=args.host,
            loop=args.loop,
            emulator_loop=args.emulator_loop,
            keep_connected=args.keep_connected,
        )
        for result in cycles:
            results.append(result)
            ratio = f"{result.ratio:>6.3f}" if result.failed == 0 else f"{'(n/a)':>6}"
            print(
                f"{result.meters:>7} {result.cycle_kind:>6} {result.read:>7} "
                f"{result.failed:>7} {result.attempts:>8} {result.cycle:>8.2f} "
                f"{result.floor:>8.3f} {ratio} {result.cpu_per_readout * 1000:>15.3f} "
                f"{result.cpu:>16.2f} {result.system_cpu:>9.2f} {result.emulator_cpu:>15.2f} "
                f"{result.last_request:>15.3f} {result.tail:>7.3f}"
                f"   load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    for result in results:
        if result.meters >= 10_000 and result.cycle_kind == "steady":
            met = result.failed == 0 and result.ratio <= 1.10
            cheap = result.cpu_per_readout <= 0.45e-3
            print(
                f"targets at {result.meters:,} meters, steady state: every meter read and ratio "
                f"<= 1.10 -> {'met' if met else 'NOT met'}; collector CPU <= 0.45 ms a readout "
                f"-> {'met' if cheap else 'NOT met'}"
            )
    return 0 if all(r.failed == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
