"""Benchmark: the collector's reliability under every fault the emulator can inject.

    python bench/bench_faults.py                      # 100,000 readouts: 1,000 meters x 100 slots
    python bench/bench_faults.py --meters 200 --slots 50 --json figures.json
    python bench/bench_faults.py --faults "shift=0.2,swap=0.2"   # other probabilities

One process, one event loop: the emulated meters (:class:`~kamstrup382.emulator.Emulator`, one
loopback TCP port each, 8-bit with parity as a TCP gateway delivers them) and the real
:class:`~kamstrup382.collector.Collector` (``auto`` BCC, its history and plausibility rules,
``keep_connected``, a temporary SQLite database), sharing a
:class:`~kamstrup382.clock.ManualClock`. Each slot the clock moves on by ``--step`` (2 h by
default, from 2026-01-29: the run crosses a month boundary, where the peaks move), the
collector reads every meter once (``run_once``: all meters in parallel, each with its retries)
and the meters answer with the registers of their own model at that instant. The line is fast
(``--speed`` times 300 baud, the reader's timing derived from the same baud rate; the answer
delay stays the specification's 20 ms, real) and the slots follow each other as soon as the
lines are quiet: 100,000 readouts, 8 days of meter time, take minutes.

Every request draws each fault kind of :data:`~kamstrup382.emulator.faults.FAULT_KINDS` with
its probability (``--faults``, the emulator's syntax; by default 2 % each, so about one
request in five gets at least one). The emulator's ground-truth log
(``Emulator(on_exchange=...)``: per request the meter's true registers, what went on the wire
and the faults applied) is then compared with EVERY reading stored in the database:

- **wrong values stored**: readings whose registers are not the meter's at the time of the
  readout, and readings whose bytes no request of their readout got in reply (both must be 0:
  the exit status is 1 otherwise);
- readings stored, failures by kind (from the database), attempts per readout;
- per fault kind: how many requests got it, how many of those did not give the reading stored
  (an extra attempt the fault cost), and how many did, unharmed (the noise before a reply is
  skipped, a late answer within the answer window, a damage that found nothing to do). The
  request that gave a readout's reading is the last one whose reply is the bytes stored;
- clean telegrams refused: requests without a fault that did not give the reading, nearly all
  of them the first of two that confirmed each other (a meter's first readout, a new peak:
  :mod:`kamstrup382.collector.history`).

The collector runs as ``k382 collect`` runs it (``collector_runtime``: the garbage collector's
thresholds, the thread switch interval); what the harness keeps (the ground truth, the
emulator's own log) is frozen out of the garbage collector's sight after each slot.
Between two slots the benchmark waits until every emulated line is quiet: a late answer
(0.7-1.5 s, the ``late`` fault) to a readout's last attempt must not be taken for the answer to
the next slot's request, which on a real line comes minutes later.

The figures measured are in ``docs/collector.md`` ("Reliability").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.collector.config import CollectorConfig, Config, MeterConfig, StorageConfig
from kamstrup382.collector.runtime import collector_runtime, raise_file_limit
from kamstrup382.emulator import Emulator, Exchange, Faults
from kamstrup382.emulator.faults import FAULT_KINDS
from kamstrup382.protocol import BccMode, MeterValues
from kamstrup382.reader import RetryPolicy, Timing, default_line, new_event_loop
from kamstrup382.storage.url import open_storage

START = datetime(2026, 1, 29, tzinfo=UTC)
#: The emulator's answer delay (real seconds), the specification's shortest.
DELAY = 0.02
#: The collector's own defaults: retries, backoff, answer window.
DEFAULTS = CollectorConfig()
DEFAULT_FAULTS = Faults(**dict.fromkeys(FAULT_KINDS, 0.02))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Heard:
    """One request as the emulator logged it, compact: the meter, the instant (on the shared
    clock), the faults applied, what went out (7-bit) and the true registers."""

    meter: int
    at: datetime
    kinds: tuple[str, ...]
    sent: bytes
    values: MeterValues | None
    #: What each fault did (the emulator's words), for the report of a wrong value.
    details: tuple[str, ...] = ()


@dataclass
class KindFigures:
    injected: int = 0
    refused: int = 0
    used: int = 0

    @property
    def cost(self) -> float:
        """Extra attempts per injected fault: the requests it spoiled, per request it hit."""
        return self.refused / self.injected if self.injected else 0.0


@dataclass
class Figures:
    meters: int
    slots: int
    faults: str
    readouts: int = 0
    readings: int = 0
    wrong: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    attempts: int = 0
    clean_refused: int = 0
    #: Readings whose bytes no request of their readout sent (must be 0).
    mismatched: int = 0
    kinds: dict[str, KindFigures] = field(default_factory=dict)
    seconds: float = 0.0
    cpu: float = 0.0
    wrong_examples: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name, kind in self.kinds.items():
            data["kinds"][name]["cost"] = round(kind.cost, 4)
        return data


class GroundTruth:
    """The emulator's ``on_exchange``: every request, as :class:`Heard`, in the order each
    meter's line finished with them; and how many requests are still being answered."""

    def __init__(self) -> None:
        self.heard: list[Heard] = []

    def __call__(self, meter: int, exchange: Exchange) -> None:
        details = tuple(f"{f.kind}: {f.detail}" for f in exchange.faults)
        self.heard.append(
            Heard(
                meter,
                exchange.requested_at,
                exchange.kinds,
                exchange.sent,
                exchange.values,
                details,
            )
        )


async def quiet(emulator: Emulator, meters: int) -> None:
    """Wait until no meter is answering (a late answer takes at most 1.5 s), at most 10 s."""
    for _ in range(1000):
        if all(not log or log[-1].ended for log in (emulator.log(i) for i in range(meters))):
            return
        await asyncio.sleep(0.01)
    raise SystemExit("the emulated meters are still answering 10 s after the slot")


def collector_config(ports: list[str], url: str, args: argparse.Namespace) -> Config:
    """The collector's configuration: one line per meter, the reader's timing at the line's
    (accelerated) baud rate, the collector's retries and answer window."""
    step = timedelta(hours=args.step)
    timing = Timing(
        baudrate=round(300 * args.speed),
        answer_timeout=args.answer_timeout,
        answer_margin=args.answer_margin,
    )
    retry = RetryPolicy(retries=args.retries, backoff=args.backoff)
    meters = tuple(
        MeterConfig(
            name=f"m{index:05d}",
            port=port,
            line=default_line(port),
            bcc=BccMode.AUTO,
            interval=step,
            jitter=timedelta(0),
            shared_line=port,
            timing=timing,
            retry=retry,
        )
        for index, port in enumerate(ports)
    )
    settings = CollectorConfig(
        interval=step,
        timing=timing,
        retry=retry,
        id="bench-faults",
        batch_size=1000,
        flush_interval=0.2,
        keep_connected=True,
    )
    return Config(meters=meters, storage=StorageConfig(url), collector=settings)


async def collect(args: argparse.Namespace, folder: Path, truth: GroundTruth) -> str:
    """Run the slots; the database's URL."""
    clock = ManualClock(args.start)
    step = timedelta(hours=args.step)
    url = f"sqlite:///{folder / 'faults.sqlite'}"
    emulator = Emulator(
        meters=args.meters,
        transport="tcp",
        host=args.host,
        speed=args.speed,
        delay=DELAY,
        faults=args.faults,
        seed=args.seed,
        clock=clock,
        write_interval=0.005,
        on_exchange=truth,
    )
    async with emulator:
        config = collector_config(emulator.ports, url, args)
        with open_storage(url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                began = time.monotonic()
                for slot in range(args.slots):
                    result = await collector.run_once()
                    await quiet(emulator, args.meters)
                    # the ground truth and the emulator's log grow with every request: out of
                    # the garbage collector's sight, or its full collections (seconds with
                    # millions of objects) would stall the loop and time readouts out
                    gc.freeze()
                    clock.advance(step)
                    # each meter's model brought to the new instant now, as a real meter's
                    # registers move on by themselves: the emulator's cost of two hours of
                    # model time (1,000 snapshots take about a second) is not the readouts'
                    for model in emulator.models:
                        model.snapshot(bcc=emulator.bcc)
                    if not args.quiet and (slot + 1) % max(1, args.slots // 10) == 0:
                        print(
                            f"  slot {slot + 1}/{args.slots}: {len(result.readings)} read, "
                            f"{len(result.failures)} failed "
                            f"{dict(Counter(f.kind for f in result.failures))}, "
                            f"{time.monotonic() - began:.0f} s",
                            file=sys.stderr,
                            flush=True,
                        )
    return url


def compare(args: argparse.Namespace, url: str, truth: GroundTruth) -> Figures:
    """Every stored reading against the ground truth; the figures."""
    figures = Figures(meters=args.meters, slots=args.slots, faults=str(args.faults))
    figures.readouts = args.meters * args.slots
    # the true registers of each meter at each instant (every request of one readout: the same)
    true: dict[tuple[int, datetime], MeterValues] = {}
    for heard in truth.heard:
        if heard.values is None:
            continue
        known = true.setdefault((heard.meter, heard.at), heard.values)
        if known != heard.values:
            raise SystemExit(f"meter {heard.meter} at {heard.at}: two different true values")
    stored: dict[tuple[int, datetime], bytes] = {}
    # each readout's requests in order
    readouts: dict[tuple[int, datetime], list[Heard]] = defaultdict(list)
    for heard in truth.heard:
        readouts[(heard.meter, heard.at)].append(heard)
    with open_storage(url) as storage:
        for reading in storage.readings():
            meter = int(reading.meter[1:])
            figures.readings += 1
            figures.attempts += reading.attempts
            stored[(meter, reading.read_at)] = reading.raw
            expected = true.get((meter, reading.read_at))
            if expected != reading.values:
                figures.wrong += 1
                if len(figures.wrong_examples) < 10:
                    told = "; ".join(
                        "+".join(heard.details) or "clean"
                        for heard in readouts[(meter, reading.read_at)]
                    )
                    figures.wrong_examples.append(
                        f"{reading.meter} at {reading.read_at.isoformat()}: stored "
                        f"{reading.values}, the meter held {expected}; its requests: {told}"
                    )
        failures = Counter[str]()
        for failure in storage.failures():
            failures[failure.kind] += 1
            figures.attempts += failure.attempts
        figures.failures = dict(sorted(failures.items()))
    kinds = {kind: KindFigures() for kind in FAULT_KINDS}
    for key, requests in readouts.items():
        raw = stored.get(key)
        gave = -1  # the request whose reply was stored: the last with its bytes
        if raw is not None:
            gave = max((i for i, r in enumerate(requests) if r.sent.endswith(raw)), default=-1)
            if gave < 0:
                figures.mismatched += 1
        for index, heard in enumerate(requests):
            figures.requests += 1
            used = index == gave
            if not heard.kinds and not used:
                figures.clean_refused += 1
            for kind in heard.kinds:
                kinds[kind].injected += 1
                if used:
                    kinds[kind].used += 1
                else:
                    kinds[kind].refused += 1
    figures.kinds = kinds
    return figures


def report(figures: Figures) -> None:
    print(
        f"{figures.readouts:,} readouts ({figures.meters:,} meters x {figures.slots} slots), "
        f"faults {figures.faults}"
    )
    print(f"wrong values stored: {figures.wrong}")
    print(
        f"readings stored: {figures.readings:,} ({figures.readings / figures.readouts:.3%}); "
        f"failures: {sum(figures.failures.values()):,} "
        + ", ".join(f"{kind} {count:,}" for kind, count in figures.failures.items())
    )
    print(
        f"requests: {figures.requests:,}, {figures.requests / figures.readouts:.3f} per readout; "
        f"clean telegrams refused (to be confirmed): {figures.clean_refused:,}; "
        f"readings the meter did not send: {figures.mismatched}"
    )
    print(f"{'fault':>9} {'injected':>9} {'refused':>9} {'used':>7} {'extra attempts/fault':>21}")
    for name, kind in figures.kinds.items():
        print(
            f"{name:>9} {kind.injected:>9,} {kind.refused:>9,} {kind.used:>7,} {kind.cost:>21.3f}"
        )
    print(f"{figures.seconds:.0f} s, {figures.cpu:.0f} CPU s")
    for example in figures.wrong_examples:
        print(f"WRONG: {example}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--meters", type=int, default=1000, help="emulated meters (1000)")
    parser.add_argument("--slots", type=int, default=100, help="readouts of each meter (100)")
    parser.add_argument(
        "--faults",
        type=Faults.parse,
        default=DEFAULT_FAULTS,
        help=f"probabilities per request, the emulator's syntax (default: {DEFAULT_FAULTS})",
    )
    parser.add_argument("--seed", type=int, default=13, help="the emulator's seed (13)")
    parser.add_argument(
        "--speed", type=float, default=100.0, help="line speed, times 300 baud (100)"
    )
    parser.add_argument("--step", type=float, default=2.0, help="hours between slots (2)")
    parser.add_argument(
        "--start",
        type=lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC),
        default=START,
        help=f"the first slot, UTC (default {START:%Y-%m-%dT%H:%M})",
    )
    parser.add_argument(
        "--retries", type=int, default=DEFAULTS.retry.retries, help="the collector's retries"
    )
    parser.add_argument(
        "--backoff", type=float, default=DEFAULTS.retry.backoff, help="first backoff, s"
    )
    parser.add_argument(
        "--answer-timeout",
        type=float,
        default=DEFAULTS.timing.answer_timeout,
        help="seconds to wait for the first byte of an answer (the collector's default)",
    )
    parser.add_argument(
        "--answer-margin",
        type=float,
        default=DEFAULTS.timing.answer_margin,
        help="extra seconds per phase (the collector's default)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address of the meters")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.meters < 1 or args.slots < 1:
        parser.error("--meters and --slots must be at least 1")
    raise_file_limit()
    truth = GroundTruth()
    began = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory(prefix="k382-faults-") as folder:
        with collector_runtime(), asyncio.Runner(loop_factory=new_event_loop) as runner:
            url = runner.run(collect(args, Path(folder), truth))
        figures = compare(args, url, truth)
    after = resource.getrusage(resource.RUSAGE_SELF)
    figures.seconds = time.monotonic() - began
    figures.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures.as_json(), indent=2) + "\n", encoding="utf-8")
    if not args.quiet:
        print(f"pid {os.getpid()}, load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 1 if figures.wrong or figures.mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
