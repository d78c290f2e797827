"""Benchmark: a KMP readout of the 382 register set against its floor; auto-detection time.

    python bench/bench_kmp.py                     # 20 readouts at 9600 and 1200 baud, detection
    python bench/bench_kmp.py --readouts 50 --delay 0.02

A readout is ``KmpReader.read()`` (and ``AsyncKmpReader.read()``) of the 382 set (16
registers: two GetRegister requests of at most 8) from the emulated 382Jx3
(``KmpEmulatorThread``) over loopback TCP. The emulator puts
each character on the line when its stop bit would arrive at the baud rate, and starts its
answer ``delay`` seconds after the request's last character would have left the wire, so::

    floor = sum over exchanges of (request bytes + reply bytes) x 10 bits / baud + delay

is the physical limit; the ratio wall / floor is the reader's own cost (target <= 1.01).

Auto-detection (``reader.detect.detect``, the ``--timeout`` margin of ``k382 read``, 0.3 s by
default): the time to find a KMP meter (mode A tried first, and timing out) and a mode A meter
(at the true 300 baud: its whole readout is the probe, and is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from kamstrup382.emulator import EmulatorThread
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.reader.detect import detect
from kamstrup382.reader.kmp_aio import AsyncKmpReader
from kamstrup382.reader.kmp_sync import KmpReader

BITS = 10


def _measure(
    emulator: KmpEmulatorThread, before: int, wall: float, baud: int, delay: float
) -> tuple[float, float, float]:
    time.sleep(0.02)  # let the emulator finish its log entry
    character_time = BITS / baud
    log = emulator.log(0)[before:]
    chars = sum(len(e.request) + len(e.sent) for e in log)
    floor = chars * character_time + len(log) * delay
    late = 0.0
    for e in log:
        assert e.answer_start is not None and e.done_at is not None
        late += e.done_at - (e.answer_start + len(e.sent) * character_time)
    return wall, floor, late


def readouts_async(baud: int, count: int, delay: float) -> list[tuple[float, float, float]]:
    """The same with :class:`AsyncKmpReader` (asyncio's loop, the clock it runs on)."""

    async def run(emulator: KmpEmulatorThread) -> list[tuple[float, float, float]]:
        results = []
        async with AsyncKmpReader(emulator.ports[0], baud=baud) as reader:
            await reader.identify()
            for _ in range(count):
                before = len(emulator.log(0))
                started = time.monotonic()
                reading = await reader.read()
                wall = time.monotonic() - started
                assert reading.attempts == reading.exchanges
                results.append(_measure(emulator, before, wall, baud, delay))
        return results

    with KmpEmulatorThread(1, baud=baud, delay=delay) as emulator:
        return asyncio.run(run(emulator))


def readouts(baud: int, count: int, delay: float) -> list[tuple[float, float, float]]:
    """(wall, floor, emulator's lateness) of ``count`` readouts at ``baud``.

    The lateness is how much later than its due time the emulator wrote each reply's last
    character (its event loop wakes up on a millisecond timer), summed over the exchanges:
    part of the wall time that is the emulator's, not the reader's.
    """
    results = []
    with (
        KmpEmulatorThread(1, baud=baud, delay=delay) as emulator,
        KmpReader(emulator.ports[0], baud=baud) as reader,
    ):
        reader.identify()  # connect first: the readout alone is measured
        for _ in range(count):
            before = len(emulator.log(0))
            started = time.monotonic()  # the emulator's loop runs on the same clock
            reading = reader.read()
            wall = time.monotonic() - started
            assert reading.attempts == reading.exchanges
            results.append(_measure(emulator, before, wall, baud, delay))
    return results


def report(baud: int, results: list[tuple[float, float, float]], reader: str) -> None:
    ratios = [wall / floor for wall, floor, _ in results]
    own = [(wall - late) / floor for wall, floor, late in results]
    walls = [wall for wall, _, _ in results]
    lates = [late for _, _, late in results]
    print(
        f"{reader:<14} {baud:>5} baud: {len(results)} readouts of 16 registers, wall median "
        f"{statistics.median(walls) * 1000:.1f} ms, floor {results[0][1] * 1000:.1f} ms: "
        f"ratio median {statistics.median(ratios):.4f}, max {max(ratios):.4f}; emulator late "
        f"by {statistics.median(lates) * 1000:.2f} ms (median), without it "
        f"{statistics.median(own):.4f}, max {max(own):.4f}"
    )


def detection(margin: float) -> None:
    with KmpEmulatorThread(1) as emulator:
        started = time.perf_counter()
        found = detect(emulator.ports[0], answer_margin=margin)
        took = time.perf_counter() - started
    print(f"auto-detection of a KMP meter: {took:.3f} s; {found.summary}")
    with EmulatorThread(1, speed=1, delay=0.05) as emulator:
        started = time.perf_counter()
        found = detect(emulator.ports[0], answer_margin=margin)
        took = time.perf_counter() - started
    print(f"auto-detection of a mode A meter (300 baud): {took:.3f} s; {found.summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readouts", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.05, help="the meter's answer time, s")
    parser.add_argument("--margin", type=float, default=0.3, help="detection's timeout margin")
    parser.add_argument("--no-detection", action="store_true")
    args = parser.parse_args()
    for baud in (9600, 1200):
        count = args.readouts if baud == 9600 else max(3, args.readouts // 4)
        report(baud, readouts(baud, count, args.delay), "KmpReader")
        report(baud, readouts_async(baud, count, args.delay), "AsyncKmpReader")
    if not args.no_detection:
        detection(args.margin)


if __name__ == "__main__":
    main()
