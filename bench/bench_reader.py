"""Benchmark: one readout at the true 300 baud against its physical floor, over a pty and TCP.

    python bench/bench_reader.py                  # 3 readouts per case (each takes ~6 s)
    python bench/bench_reader.py --readouts 5 --delay 0.3
    python bench/bench_reader.py --readouts 1 --iec-sum7

Each case reads an emulated meter (``kamstrup382.emulator.EmulatorThread`` at ``speed=1``, a
fixed answer delay) several times and reports, per readout, the wall time of the read call
divided by the physical floor of that readout::

    floor = (5 request characters + reply characters) / 30 characters a second + answer delay

The emulator puts every character on the line when its stop bit would arrive at 300 baud, so
1.000 is the limit and anything above it is the reader's own cost (waiting for silence, sleeps,
wake-up latency). Cases:

- ``Reader`` and ``AsyncReader`` over a pty (7E1) and over TCP (8N1: the emulator sends the
  parity bit as a gateway does), on a port opened once (``open+read+close`` is also reported
  for the first readout: ``k382 read`` pays it once);
- the PyPI package ``iec62056-21`` (0.0.2, ``Iec6205621Client.standard_readout``) over TCP,
  reading an XOR-BCC emulator (it knows only the IEC XOR, and NAKs and waits on the Kamstrup
  sum) with 7-bit characters (it does not strip parity bits), next to our ``Reader`` on the
  same emulator;
- with ``--iec-sum7``, the same package on the Kamstrup 382 as it is (sum BCC): it NAKs the
  telegram, which a mode A meter ignores, and waits for its 30 s socket timeout;
- the same package on a pty (its serial transport switches to the baud rate the
  identification proposes; a mode A meter proposes none, so it fails: reported);
- what pyserial's own ``socket://`` handler costs to close (it sleeps 0.3 s), against the
  reader's socket transport.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import serial

from kamstrup382.emulator import EmulatorThread
from kamstrup382.emulator.server import Transport
from kamstrup382.protocol import REQUEST
from kamstrup382.reader import AsyncReader, Reader

CHARS_PER_SECOND = 30.0  # 300 baud, 10 bits a character


@dataclass
class Case:
    name: str
    walls: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    first_with_open_close: float | None = None
    first_floor: float | None = None
    error: str | None = None

    @property
    def ratios(self) -> list[float]:
        return [w / f for w, f in zip(self.walls, self.floors, strict=True)]


def floor_of(reply_chars: int, delay: float) -> float:
    return (len(REQUEST) + reply_chars) / CHARS_PER_SECOND + delay


def bench_sync(name: str, port: str, readouts: int, delay: float, **options: object) -> Case:
    case = Case(name)
    t0 = time.monotonic()
    reader = Reader(port, **options)  # type: ignore[arg-type]
    try:
        for index in range(readouts):
            start = time.monotonic()
            reading = reader.read()
            case.walls.append(time.monotonic() - start)
            case.floors.append(floor_of(len(reading.raw), delay))
            if index == 0:
                reader.close()
                case.first_with_open_close = time.monotonic() - t0
                case.first_floor = case.floors[0]
    finally:
        reader.close()
    return case


def bench_async(name: str, port: str, readouts: int, delay: float, **options: object) -> Case:
    case = Case(name)

    async def run() -> None:
        t0 = time.monotonic()
        reader = AsyncReader(port, **options)  # type: ignore[arg-type]
        try:
            for index in range(readouts):
                start = time.monotonic()
                reading = await reader.read()
                case.walls.append(time.monotonic() - start)
                case.floors.append(floor_of(len(reading.raw), delay))
                if index == 0:
                    await reader.close()
                    case.first_with_open_close = time.monotonic() - t0
                    case.first_floor = case.floors[0]
        finally:
            await reader.close()

    asyncio.run(run())
    return case


def bench_iec(name: str, emu: EmulatorThread, readouts: int, delay: float) -> Case:
    from iec62056_21.client import Iec6205621Client

    case = Case(name)
    port = emu.ports[0]
    begun = time.monotonic()
    try:
        for _ in range(readouts):
            begun = time.monotonic()
            if port.startswith("socket://"):
                host, _, tcp_port = port.removeprefix("socket://").rpartition(":")
                client = Iec6205621Client.with_tcp_transport((host, int(tcp_port)))
            else:
                client = Iec6205621Client.with_serial_transport(port)
            client.connect()
            try:
                start = time.monotonic()
                answer = client.standard_readout()
                wall = time.monotonic() - start
            finally:
                client.disconnect()
            if not answer.data:
                raise RuntimeError("no data sets in the answer")
            case.walls.append(wall)
            case.floors.append(floor_of(len(emu.sent(0)[-1]), delay))
    except Exception as exc:  # reported, not fatal: the side-by-side is informative
        reason = str(exc) or repr(exc.__cause__)
        case.error = f"{type(exc).__name__}: {reason} after {time.monotonic() - begun:.1f} s"
    return case


def pyserial_socket_close(port: str) -> float:
    ser = serial.serial_for_url(port, timeout=1)
    start = time.monotonic()
    ser.close()
    return time.monotonic() - start


def our_socket_close(port: str) -> float:
    reader = Reader(port)
    reader.open()
    start = time.monotonic()
    reader.close()
    return time.monotonic() - start


def emulator(transport: Transport, delay: float, **kwargs: Any) -> EmulatorThread:
    """One emulated meter at the true 300 baud with a fixed answer delay."""
    return EmulatorThread(transport=transport, speed=1.0, delay=delay, **kwargs)


def report(case: Case) -> None:
    if case.error is not None:
        print(f"{case.name:<44} failed: {case.error}")
        return
    ratios = case.ratios
    line = (
        f"{case.name:<44} floor {statistics.mean(case.floors):6.3f} s  "
        f"wall {statistics.mean(case.walls):6.3f} s  "
        f"ratio mean {statistics.mean(ratios):.4f} max {max(ratios):.4f}"
    )
    if case.first_with_open_close is not None and case.first_floor is not None:
        line += f"  (open+read+close {case.first_with_open_close / case.first_floor:.4f})"
    print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readouts", type=int, default=3, help="readouts per case")
    parser.add_argument("--delay", type=float, default=0.05, help="answer delay (s)")
    parser.add_argument(
        "--iec-sum7",
        action="store_true",
        help="also let iec62056-21 read the Kamstrup sum-BCC meter (it NAKs, then times out)",
    )
    args = parser.parse_args()
    n, delay = args.readouts, args.delay
    print(f"true 300 baud, answer delay {delay} s, {n} readouts per case", flush=True)

    cases: list[Case] = []

    def run(case: Case) -> None:
        cases.append(case)
        report(case)

    transports: tuple[tuple[Transport, str], ...] = (("pty", "7E1"), ("tcp", "8N1"))
    for transport, line in transports:
        with emulator(transport, delay) as emu:
            run(bench_sync(f"Reader {transport} {line}", emu.ports[0], n, delay))
        with emulator(transport, delay) as emu:
            run(bench_async(f"AsyncReader {transport} {line}", emu.ports[0], n, delay))

    # side by side on an XOR-BCC meter sending 7-bit characters over TCP
    with emulator("tcp", delay, bcc="xor", eight_bit=False) as emu:
        run(bench_sync("Reader tcp 7-bit, XOR meter", emu.ports[0], n, delay, line="7E1"))
    with emulator("tcp", delay, bcc="xor", eight_bit=False) as emu:
        run(bench_iec("iec62056-21 0.0.2 tcp 7-bit, XOR meter", emu, n, delay))
    with emulator("pty", delay, bcc="xor") as emu:
        run(bench_iec("iec62056-21 0.0.2 pty 7E1, XOR meter", emu, 1, delay))
    if args.iec_sum7:
        with emulator("tcp", delay, eight_bit=False) as emu:
            run(bench_iec("iec62056-21 0.0.2 tcp 7-bit, sum7 meter", emu, 1, delay))

    with EmulatorThread(transport="tcp", speed=1.0) as emu:
        theirs = pyserial_socket_close(emu.ports[0])
        ours = our_socket_close(emu.ports[0])
    print(f"closing socket://: pyserial {theirs:.3f} s, kamstrup382 Reader {ours:.3f} s")

    ours_worst = max(max(c.ratios) for c in cases if c.error is None and "iec" not in c.name)
    verdict = "met" if ours_worst <= 1.005 else "NOT met"
    print(f"target ratio <= 1.005 for every readout of ours: worst {ours_worst:.4f} -> {verdict}")
    return 0 if ours_worst <= 1.005 else 1


if __name__ == "__main__":
    sys.exit(main())
