"""Pulse sources: the emulator's pulse-out over TCP end to end, reconnects, bad lines; GPIO's
errors (the GPIO path itself runs on hardware only)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from kamstrup382.emulator import Emulator
from kamstrup382.emulator.load import parse_load
from kamstrup382.emulator.pulse_server import PulseServer
from kamstrup382.errors import UsageError
from kamstrup382.pulses import PowerEstimate
from kamstrup382.pulses.sources import (
    GpioPulseSource,
    PulseEvent,
    TcpPulseSource,
    open_pulse_source,
)


@pytest.mark.parametrize(
    "text",
    [
        "tcp://host",
        "tcp://:9000",
        "tcp://h:0",
        "udp://h:1",
        "gpio:/dev/gpiochip0",
        "gpio::17",
        "gpio:/dev/gpiochip0:x",
        "gpio:/dev/gpiochip0:17:sideways",
    ],
)
def test_bad_sources_say_what_is_expected(text: str) -> None:
    with pytest.raises(UsageError, match="expected"):
        open_pulse_source(text)


def test_sources_parse() -> None:
    tcp = open_pulse_source("tcp://127.0.0.1:9000")
    assert isinstance(tcp, TcpPulseSource)
    assert (tcp.host, tcp.port) == ("127.0.0.1", 9000)
    gpio = open_pulse_source("gpio:/dev/gpiochip0:17:rising")
    assert isinstance(gpio, GpioPulseSource)
    assert (gpio.chip, gpio.line, gpio.edge) == ("/dev/gpiochip0", 17, "rising")


async def test_a_missing_gpio_chip_is_named() -> None:
    source = open_pulse_source("gpio:/dev/gpiochip-that-is-not-there:17")
    with pytest.raises(UsageError, match="no GPIO chip /dev/gpiochip-that-is-not-there"):
        await anext(source.events())


@asynccontextmanager
async def pulsing_meter(kw: str, port: int = 0) -> AsyncIterator[tuple[Emulator, PulseServer]]:
    async with Emulator(1, transport="tcp", host="127.0.0.1", load=parse_load(kw)) as emulator:
        server = PulseServer(emulator.subscribe_pulses, 1, "127.0.0.1", port)
        await server.start()
        try:
            yield emulator, server
        finally:
            await server.close()


def _source(server: PulseServer) -> TcpPulseSource:
    source = open_pulse_source(server.ports[0])
    assert isinstance(source, TcpPulseSource)
    return source


async def _take(source: TcpPulseSource, count: int) -> list[PulseEvent]:
    events = []
    stream = source.events()
    try:
        async with asyncio.timeout(20):
            while len(events) < count:
                events.append(await anext(stream))
    finally:
        await stream.aclose()
    return events


async def test_the_emulated_meter_s_power_from_its_pulses() -> None:
    async with pulsing_meter("constant:36") as (_, server):  # a pulse every 0.1 s
        events = await _take(_source(server), 6)
    assert events[0].gap and not any(e.gap for e in events[1:])
    estimate = PowerEstimate(1000)
    for event in events:
        estimate.pulse(event.at_ns, event.count)
    power = estimate.power(events[-1].at_ns)
    assert power.watts == pytest.approx(36_000, rel=0.01)
    assert estimate.pulses == sum(e.count for e in events)


async def test_a_restarted_source_is_followed_with_a_gap() -> None:
    async with pulsing_meter("constant:36") as (emulator, server):
        source = _source(server)
        port = server.ports[0].rsplit(":", 1)[1]
        stream = source.events()
        try:
            first = await asyncio.wait_for(anext(stream), 10)
            await server.close()  # the source goes away, comes back on the same port
            again = PulseServer(emulator.subscribe_pulses, 1, "127.0.0.1", int(port))
            await again.start()
            try:
                async with asyncio.timeout(20):
                    after = await anext(stream)
                    while not after.gap:  # events already on their way before the restart
                        after = await anext(stream)
            finally:
                await again.close()
        finally:
            await stream.aclose()
    assert first.gap and after.gap
    assert source.connects == 2


Script = Callable[[asyncio.StreamWriter], None]


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[int]:
    """A pulse server that writes what ``script`` writes, then closes (for what the emulator
    cannot do: lose pulses, send garbage)."""

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script(writer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _line(count: int, total: int, second: int) -> bytes:
    at = f"2026-03-01T12:00:{second:02d}.000000Z"
    return json.dumps({"meter": 1, "count": count, "at": at, "total": total}).encode() + b"\n"


async def test_pulses_passed_unseen_are_counted_and_garbage_skipped() -> None:
    def script(writer: asyncio.StreamWriter) -> None:
        writer.write(_line(1, 1, 0))
        writer.write(b"not json\n" + b'{"count": 0, "total": 2, "at": "x"}\n')
        writer.write(_line(1, 2, 1))
        writer.write(_line(1, 7, 6))  # 4 pulses went by unreported
        writer.write(b"x" * 5000 + b"\n")  # far too long: the connection is dropped

    async with scripted(script) as port:
        source = TcpPulseSource("127.0.0.1", port)
        events = await _take(source, 4)
    assert [(e.count, e.missed, e.gap) for e in events[:3]] == [
        (1, 0, True),
        (1, 0, False),
        (1, 4, True),
    ]
    assert events[3].gap  # the next connection
    assert events[1].at_ns - events[0].at_ns == 1_000_000_000
    assert source.bad_lines >= 3
    estimate = PowerEstimate(1000)
    for event in events[:3]:
        estimate.pulse(event.at_ns, event.count, missed=event.missed)
    assert (estimate.pulses, estimate.missed, estimate.since_resync) == (3, 4, 7)
    assert estimate.power(events[2].at_ns).watts is None  # no interval across the loss
