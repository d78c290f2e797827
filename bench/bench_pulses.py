"""Benchmark: live power from pin 3's pulses against the emulated meter's true load.

    python3 bench/bench_pulses.py                 # about 30 s
    python3 bench/bench_pulses.py --pulses 50     # more pulses per load

An emulated meter (1000 imp/kWh) on a virtual clock running ``--factor`` times real time serves
its pulse-out over loopback TCP (``PulseServer``, as ``k382 emulate --pulse-listen`` does); a
``TcpPulseSource`` reads it and a ``PowerEstimate`` turns the pulses into power. Reported:

- **accuracy** at a constant 0.1, 1, 5 and 20 kW: the reported power after each pulse from the
  second on, against the true load: the largest relative error (target <= 0.5 %);
- **a step** from 1 kW to 5 kW: the error after the first and the second pulse that follow it
  (the first spans the step; from the second on it is the new load's);
- **CPU per pulse** on the consumer's side (a pulse line parsed, the estimate fed and asked),
  as a share of the shortest time between two pulses the meter can give (its maximum power,
  79.7 kW: 45 ms at 1000 imp/kWh): the share of one core a module would spend at full load.

The emulator gives each pulse its exact instant (to the microsecond), so the constant loads
show the estimate's own error (none beyond rounding); on hardware the kernel's edge timestamps
add their jitter. Not measured here: the latency from a pulse to MQTT, which needs the
collector's pulse input (not built yet).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kamstrup382.clock import ScaledClock
from kamstrup382.emulator import Emulator
from kamstrup382.emulator.load import parse_load
from kamstrup382.emulator.pulse_server import PulseServer
from kamstrup382.pulses import PowerEstimate
from kamstrup382.pulses.estimate import DEFAULT_MAX_POWER_W
from kamstrup382.pulses.sources import PulseEvent, TcpPulseSource

CONSTANT = 1000
START = datetime(2026, 3, 2, tzinfo=UTC)


async def pulses_at(load: str, count: int, factor: float) -> list[PulseEvent]:
    """``count`` pulse events of an emulated meter with ``load``, read over loopback TCP."""
    clock = ScaledClock(START, factor)
    async with Emulator(1, transport="tcp", clock=clock, load=parse_load(load)) as emulator:
        server = PulseServer(emulator.subscribe_pulses, 1, "127.0.0.1", 0)
        await server.start()
        try:
            host, port = server.ports[0].removeprefix("tcp://").rsplit(":", 1)
            stream = TcpPulseSource(host, int(port)).events()
            events = [await asyncio.wait_for(anext(stream), 120) for _ in range(count)]
            await stream.aclose()
        finally:
            await server.close()
    return events


def errors(events: list[PulseEvent], watts: float) -> list[float]:
    """Relative error of the power reported after each pulse from the second on."""
    estimate = PowerEstimate(CONSTANT)
    out = []
    for event in events:
        estimate.pulse(event.at_ns, event.count, missed=event.missed)
        reported = estimate.power(event.at_ns).watts
        if reported is not None:
            out.append(abs(reported - watts) / watts)
    return out


async def step(factor: float) -> tuple[float, float]:
    """Errors after the first and the second pulse after a step from 1 kW to 5 kW."""
    clock = ScaledClock(START, factor)
    async with Emulator(1, transport="tcp", clock=clock, load=parse_load("constant:1")) as emulator:
        server = PulseServer(emulator.subscribe_pulses, 1, "127.0.0.1", 0)
        await server.start()
        try:
            host, port = server.ports[0].removeprefix("tcp://").rsplit(":", 1)
            stream = TcpPulseSource(host, int(port)).events()
            estimate = PowerEstimate(CONSTANT)
            for _ in range(3):
                event = await asyncio.wait_for(anext(stream), 120)
                estimate.pulse(event.at_ns, event.count)
            emulator.models[0].load = parse_load("constant:5")
            after = []
            while len(after) < 2:
                event = await asyncio.wait_for(anext(stream), 120)
                estimate.pulse(event.at_ns, event.count)
                watts = estimate.power(event.at_ns).watts
                assert watts is not None
                after.append(abs(watts - 5000) / 5000)
            await stream.aclose()
        finally:
            await server.close()
    return after[0], after[1]


def cpu_per_pulse(lines: int = 200_000) -> float:
    """Seconds of CPU to parse one pulse line and feed and ask the estimate."""
    source = TcpPulseSource("127.0.0.1", 1)
    estimate = PowerEstimate(CONSTANT)
    base = START
    encoded = []
    for index in range(lines):
        at = (base + timedelta(milliseconds=500 * index)).isoformat(timespec="microseconds")
        line = {"meter": 1, "count": 1, "at": at.replace("+00:00", "Z"), "total": index + 1}
        encoded.append(json.dumps(line).encode() + b"\n")
    started = time.process_time()
    for index, line in enumerate(encoded):
        event = source._event(line, index == 0)
        assert event is not None
        estimate.pulse(event.at_ns, event.count, missed=event.missed)
        estimate.power(event.at_ns)
    return (time.process_time() - started) / lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulses", type=int, default=20, help="pulses per load")
    parser.add_argument("--factor", type=float, default=200.0, help="virtual clock speed")
    args = parser.parse_args()
    print(f"emulated meter, {CONSTANT} imp/kWh, virtual clock x{args.factor:g}")
    print(f"{'load':>8}  {'pulses':>6}  {'max error':>10}  {'mean error':>10}")
    for kw in ("0.1", "1", "5", "20"):
        events = asyncio.run(pulses_at(f"constant:{kw}", args.pulses, args.factor))
        errs = errors(events, float(Decimal(kw) * 1000))
        print(
            f"{kw + ' kW':>8}  {len(events):>6}  {max(errs) * 100:>9.4f}%  "
            f"{sum(errs) / len(errs) * 100:>9.4f}%"
        )
    first, second = asyncio.run(step(args.factor))
    print(
        f"step 1 -> 5 kW: error after the 1st pulse {first * 100:.2f} %, after the 2nd "
        f"{second * 100:.4f} % (target <= 0.5 %)"
    )
    cpu = cpu_per_pulse()
    shortest = 3.6e6 / CONSTANT / DEFAULT_MAX_POWER_W
    print(
        f"CPU per pulse {cpu * 1e6:.1f} us = {cpu / shortest * 100:.3f} % of the shortest "
        f"pulse interval ({shortest * 1000:.0f} ms at {DEFAULT_MAX_POWER_W / 1000:.1f} kW)"
    )


if __name__ == "__main__":
    main()
