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

- **pulse to MQTT**: an emulated meter at 20 kW on the real clock, the collector's pulse input
  (``PulseInputs``) with ``power_interval = 0`` (every pulse published) and the MQTT power
  output, through a real mosquitto on loopback (Debian's ``/usr/sbin/mosquitto``): from the
  pulse's instant on the meter's clock to the message's arrival at a subscriber, p50 and p99
  (target p99 <= 50 ms). It includes the emulator waking for the pulse, the TCP hop, the
  estimate, the publish and the broker.

The emulator gives each pulse its exact instant (to the microsecond), so the constant loads
show the estimate's own error (none beyond rounding); on hardware the kernel's edge timestamps
add their jitter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures.mosquitto import MosquittoBroker

from kamstrup382.clock import ScaledClock
from kamstrup382.collector.config import CollectorConfig, build_meter
from kamstrup382.collector.pulse_inputs import PulseInputs
from kamstrup382.emulator import Emulator
from kamstrup382.emulator.load import parse_load
from kamstrup382.emulator.pulse_server import PulseServer
from kamstrup382.outputs.mqtt_settings import MqttSettings
from kamstrup382.outputs.power import PowerMqttOutput
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


async def mqtt_latency(pulses: int, kw: str = "20") -> list[float]:
    """Seconds from each pulse's instant to its power message at a subscriber (module doc)."""
    with (
        tempfile.TemporaryDirectory() as directory,
        MosquittoBroker(Path(directory) / "mosquitto") as broker,
    ):
        async with Emulator(1, transport="tcp", load=parse_load(f"constant:{kw}")) as emulator:
            server = PulseServer(emulator.subscribe_pulses, 1, "127.0.0.1", 0)
            await server.start()
            table = {"name": "bench", "port": "socket://127.0.0.1:1", "pulses": server.ports[0]}
            meter = build_meter({**table, "power_interval": 0}, CollectorConfig())
            output = PowerMqttOutput(MqttSettings.parse({"url": broker.url, "client_id": "b"}))
            inputs = PulseInputs([meter], [output])
            latencies: list[float] = []
            seen: set[int] = set()
            async with aiomqtt.Client(broker.host, broker.port, identifier="bench-sub") as sub:
                await sub.subscribe("kamstrup382/bench/power", qos=0)
                await inputs.start()
                try:
                    async with asyncio.timeout(60 + pulses):
                        async for message in sub.messages:
                            arrived = time.time()
                            data = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                            if data["pulse_at"] is None or data["pulses"] in seen:
                                continue  # a tick between pulses, not a pulse
                            seen.add(data["pulses"])
                            at = datetime.fromisoformat(data["pulse_at"].replace("Z", "+00:00"))
                            latencies.append(arrived - at.timestamp())
                            if len(latencies) >= pulses:
                                break
                finally:
                    await inputs.close()
                    await output.stop()
                    await server.close()
    return latencies[1:]  # the first: the connection to the broker was being made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulses", type=int, default=20, help="pulses per load")
    parser.add_argument("--factor", type=float, default=200.0, help="virtual clock speed")
    parser.add_argument(
        "--mqtt-pulses", type=int, default=100, help="pulses timed to MQTT (20 kW: 0.18 s each)"
    )
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
    latencies = sorted(asyncio.run(mqtt_latency(args.mqtt_pulses)))
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"pulse to MQTT ({len(latencies)} pulses, mosquitto on loopback): p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms (target p99 <= 50 ms)"
    )
    cpu = cpu_per_pulse()
    shortest = 3.6e6 / CONSTANT / DEFAULT_MAX_POWER_W
    print(
        f"CPU per pulse {cpu * 1e6:.1f} us = {cpu / shortest * 100:.3f} % of the shortest "
        f"pulse interval ({shortest * 1000:.0f} ms at {DEFAULT_MAX_POWER_W / 1000:.1f} kW)"
    )


if __name__ == "__main__":
    main()
