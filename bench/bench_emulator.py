"""Benchmark: the emulator's timing at ``--speed 1`` (the true 300 baud), measured by a raw client.

    python bench/bench_emulator.py                  # 3 readouts over TCP, 3 over a pty
    python bench/bench_emulator.py --readouts 5
    python bench/bench_emulator.py --many 1000      # also N TCP meters read at once

The emulator's model of the line (``kamstrup382.emulator.line``): the request takes its 5
characters on the wire (30 characters a second), the answer starts ``delay`` seconds after the
request's last character (the spec's 20-600 ms; here drawn uniformly from the whole window),
and each reply character arrives when its stop bit would. Per readout this prints:

- ``first s``: request written -> first reply byte arrived (raw).
- ``answer ms``: the answer delay reconstructed from the client's clock: first byte - request
  written - 5 request characters - 1 reply character. Must lie inside 20-600 ms; ``err ms``
  is its difference from the delay the emulator drew (the log).
- ``reply ratio``: (last byte - first byte) / the wire time of the characters after the
  first ((N - 1) x 33.3 ms). Target: within 1 % of 1.
- ``readout ratio``: (last byte - request written) / the physical floor ((5 + N) characters
  + the delay). 1.00 is the floor; a reader cannot do better on a real line.

``--many N`` starts ``k382 emulate --tcp 127.0.0.1:0 --meters N --speed 1`` as its own
process, reads all N meters at once with a minimal asyncio client (raw sockets) and prints the
readout ratio's median and maximum and the emulator process's CPU seconds per readout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import serial

from kamstrup382.emulator import EmulatorThread
from kamstrup382.emulator.line import CHARACTERS_PER_SECOND
from kamstrup382.emulator.open_files import more_files
from kamstrup382.protocol import ETX, REQUEST

CT = 1.0 / CHARACTERS_PER_SECOND


@dataclass(frozen=True)
class Timing:
    line: str
    size: int
    delay: float  # drawn by the emulator
    first: float  # request written -> first byte
    last: float  # request written -> last byte

    @property
    def answer(self) -> float:
        return self.first - len(REQUEST) * CT - CT

    @property
    def reply_ratio(self) -> float:
        return (self.last - self.first) / ((self.size - 1) * CT)

    @property
    def readout_ratio(self) -> float:
        return self.last / ((len(REQUEST) + self.size) * CT + self.delay)


def read_timed(port: str) -> tuple[int, float, float]:
    """One request; (reply size, first-byte time, last-byte time) after the write."""
    if port.startswith("socket://"):
        ser = serial.serial_for_url(port, timeout=10)
    else:
        ser = serial.Serial(port, 300, bytesize=7, parity="E", stopbits=1, timeout=10)
    try:
        data = bytearray()
        ser.write(REQUEST)
        start = time.perf_counter()
        first = 0.0
        while True:
            chunk = ser.read(max(1, ser.in_waiting))
            now = time.perf_counter()
            if not chunk:
                raise SystemExit(f"{port}: no reply within 10 s ({len(data)} bytes)")
            if not data:
                first = now - start
            data += chunk
            etx = bytes(b & 0x7F for b in data).find(bytes((ETX,)))
            if 0 <= etx < len(data) - 1:
                return len(data), first, now - start
    finally:
        ser.close()


def run_line(transport: str, readouts: int, seed: int) -> list[Timing]:
    timings = []
    with EmulatorThread(transport=transport, speed=1.0, delay=(0.02, 0.6), seed=seed) as emu:
        for _ in range(readouts):
            size, first, last = read_timed(emu.ports[0])
            delay = emu.log(0)[-1].delay
            timings.append(Timing(transport, size, delay, first, last))
    return timings


def print_timings(timings: list[Timing]) -> None:
    print(
        f"{'line':>4} {'bytes':>5} {'delay ms':>8} {'first s':>8} {'answer ms':>9} {'err ms':>7} "
        f"{'reply ratio':>11} {'readout ratio':>13}"
    )
    for t in timings:
        print(
            f"{t.line:>4} {t.size:>5} {t.delay * 1000:>8.1f} {t.first:>8.3f} "
            f"{t.answer * 1000:>9.1f} {(t.answer - t.delay) * 1000:>7.1f} "
            f"{t.reply_ratio:>11.4f} {t.readout_ratio:>13.4f}",
            flush=True,
        )


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def read_raw(port: int) -> tuple[int, float]:
    """Minimal asyncio client: (reply size, request written -> last byte)."""
    return await asyncio.wait_for(_read_raw(port), 60)


async def _read_raw(port: int) -> tuple[int, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(REQUEST)
        start = time.perf_counter()
        data = bytearray()
        while True:
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError(f"port {port} closed after {len(data)} bytes")
            data += chunk
            etx = bytes(b & 0x7F for b in data).find(bytes((ETX,)))
            if 0 <= etx < len(data) - 1:
                return len(data), time.perf_counter() - start
    finally:
        writer.close()


def run_many(count: int, delay: float) -> None:
    more_files(4 * count + 256)
    k382 = shutil.which("k382")
    command = [k382] if k382 else [sys.executable, "-m", "kamstrup382"]
    command += ["emulate", "--tcp", "127.0.0.1:0", "--meters", str(count)]
    command += ["--speed", "1", "--delay", str(delay), "--load", "constant:1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ports = []
        for line in proc.stdout:
            ports += [int(p) for p in re.findall(r"socket://127\.0\.0\.1:(\d+)", line)]
            if line.startswith("Ctrl-C stops."):
                break
        else:
            raise SystemExit(f"emulator failed: {proc.stderr.read() if proc.stderr else ''}")
        port = ports[0]
        before = cpu_seconds(proc.pid)

        async def all_meters() -> list[tuple[int, float]]:
            return await asyncio.gather(*(read_raw(port + i) for i in range(count)))

        results = asyncio.run(all_meters())
        cpu = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    ratios = sorted(t / ((len(REQUEST) + n) * CT + delay) for n, t in results)
    print(
        f"{count:>7} meters read at once: readout ratio median {statistics.median(ratios):.4f} "
        f"max {ratios[-1]:.4f}; emulator CPU {cpu:.2f} s = {cpu / count * 1000:.3f} ms/readout"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readouts", type=int, default=3, help="readouts per line (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random delays")
    parser.add_argument("--many", type=int, action="append", help="also N TCP meters at once")
    args = parser.parse_args()
    print(
        f"pid {os.getpid()}, {os.cpu_count()} CPUs, open-file limit "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}, 1 character = {CT * 1000:.2f} ms"
    )
    timings = run_line("tcp", args.readouts, args.seed) + run_line("pty", args.readouts, args.seed)
    print_timings(timings)
    window = all(0.02 <= t.answer <= 0.6 for t in timings)
    worst = max(abs(t.reply_ratio - 1) for t in timings)
    print(
        f"answer delay inside 20-600 ms: {'yes' if window else 'NO'}; "
        f"worst reply ratio off by {worst * 100:.3f} % "
        f"(target 1 %: {'met' if worst <= 0.01 else 'NOT met'})"
    )
    for count in args.many or []:
        run_many(count, 0.02)
    return 0 if window and worst <= 0.01 else 1


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
