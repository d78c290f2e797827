"""Bounded whatever a gateway sends: a loopback "gateway" that never stops talking.

The gateway (an asyncio server on 127.0.0.1, in a thread of its own) answers each request with
a prefix and then streams filler until the next request (or its byte budget is spent): noise
without '/', an endless identification line, an endless data block, or a whole reply followed
by endless noise (bytes between attempts). Each readout must fail with the right typed error
within its deadline, and the process's memory (``tracemalloc``'s peak, the gateway's own
buffers included) must stay small while megabytes go by.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kamstrup382.errors import FramingError, Kamstrup382Error, ReadTimeout
from kamstrup382.protocol import REQUEST
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY
from kamstrup382.reader import AsyncReader, Reader, Timing
from kamstrup382.reader.aio_links import KEEP, AsyncTcpLink, AsyncThreadLink
from kamstrup382.reader.link import SerialLink

from .peer import EXAMPLE, Rfc2217Bridge

IDENT_LINE = EXAMPLE[: EXAMPLE.index(b"\n") + 1]
#: prefix after each request, then filler until the next one
SCRIPTS = {
    "noise": (b"", b"noise without a slash, "),
    "identification": (b"/KAM5", b"x"),
    "data block": (IDENT_LINE + b"\x02", b"1"),
    "between attempts": (EXAMPLE, b"noise after the reply, "),
}
CHUNK = 64 * 1024
PER_REQUEST = 6 * 1024 * 1024  # bytes streamed after one request at most
TOTAL = 24 * 1024 * 1024  # per gateway, at most
#: tracemalloc's peak allowed over a run (the gateway's write buffers included)
MEMORY_BOUND = 1024 * 1024


def timing() -> Timing:
    return Timing(baudrate=9600, answer_timeout=0.3, answer_margin=0.1)


class FloodGateway:
    """The loopback gateway; ``sent`` counts the bytes it wrote."""

    def __init__(self, script: str, per_request: int = PER_REQUEST) -> None:
        self.prefix, filler = SCRIPTS[script]
        self.per_request = per_request
        self.chunk = (filler * (CHUNK // len(filler) + 1))[:CHUNK]
        self.sent = 0
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FloodGateway:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        assert stop is not None
        self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in self._clients:
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)  # type: ignore[arg-type]
        request = asyncio.Event()
        pump = asyncio.create_task(self._pump(writer, request))
        seen = b""
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                seen = seen[-(len(REQUEST) - 1) :] + data
                count = seen.count(REQUEST)
                if count:
                    self.requests += count
                    seen = b""
                    request.set()
        except ConnectionError:
            pass
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            writer.close()

    async def _pump(self, writer: asyncio.StreamWriter, request: asyncio.Event) -> None:
        try:
            while self.sent < TOTAL:
                await request.wait()
                request.clear()
                writer.write(self.prefix)
                streamed = 0
                while streamed < self.per_request and self.sent < TOTAL and not request.is_set():
                    writer.write(self.chunk)
                    streamed += len(self.chunk)
                    self.sent += len(self.chunk)
                    await writer.drain()
        except ConnectionError:
            pass


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """tracemalloc's peak over the block, in bytes (in the list, once the block ends)."""
    result: list[int] = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def expected_error(script: str) -> tuple[type[Kamstrup382Error], str]:
    if script == "noise":
        return ReadTimeout, "no answer within"
    if script == "identification":
        return FramingError, "identification line longer than"
    return FramingError, f"reply longer than {DEFAULT_MAX_REPLY} bytes"


def check_error(
    error: Kamstrup382Error, kind: type[Kamstrup382Error], message: str, *, first: bool
) -> None:
    """The first readout fails as the flood says; a later one may instead time out: what the
    flood left queued in the sockets before the next request hides the next answer."""
    if first or not isinstance(error, ReadTimeout):
        assert isinstance(error, kind), error
        assert message in str(error), error


@pytest.mark.parametrize("script", ["noise", "identification", "data block"])
async def test_the_async_reader_fails_in_time_and_stays_small(script: str) -> None:
    kind, message = expected_error(script)
    with FloodGateway(script) as gateway:
        with peak_memory() as peak:
            async with AsyncReader(
                f"socket://127.0.0.1:{gateway.port}", line="7E1", timing=timing(), retries=1
            ) as reader:
                for index in range(3):
                    started = time.monotonic()
                    with pytest.raises(Kamstrup382Error) as info:
                        await reader.read()
                    check_error(info.value, kind, message, first=index == 0)
                    # two attempts, a drain and a backoff between them: within seconds
                    assert time.monotonic() - started < 5.0
                    link = reader._link
                    assert isinstance(link, AsyncTcpLink)
                    assert link.inbox.kept <= KEEP
                    await asyncio.sleep(0.2)  # the gateway keeps talking between readouts
        assert gateway.requests >= 6
    assert gateway.sent >= 4 * 1024 * 1024, gateway.sent
    assert peak[0] < MEMORY_BOUND, (peak[0], gateway.sent)


async def test_the_async_reader_drops_what_comes_between_attempts() -> None:
    with FloodGateway("between attempts") as gateway, peak_memory() as peak:
        async with AsyncReader(
            f"socket://127.0.0.1:{gateway.port}", line="7E1", timing=timing(), retries=0
        ) as reader:
            for _ in range(4):
                reading = await reader.read()
                assert reading.raw == EXAMPLE
                await asyncio.sleep(0.3)  # the gateway floods meanwhile
            link = reader._link
            assert isinstance(link, AsyncTcpLink)
            assert link.inbox.kept == 0
            assert link.inbox.discarded > 1024 * 1024
    assert gateway.sent >= 4 * 1024 * 1024, gateway.sent
    assert peak[0] < MEMORY_BOUND, (peak[0], gateway.sent)


@pytest.mark.parametrize("script", ["noise", "identification", "data block", "between attempts"])
def test_the_sync_reader_fails_in_time_and_stays_small(script: str) -> None:
    with (
        FloodGateway(script) as gateway,
        peak_memory() as peak,
        Reader(
            f"socket://127.0.0.1:{gateway.port}", line="7E1", timing=timing(), retries=1
        ) as reader,
    ):
        for attempt in range(3):
            started = time.monotonic()
            if script == "between attempts":
                assert reader.read().raw == EXAMPLE
                time.sleep(0.3)  # the gateway floods meanwhile (up to the socket's buffers)
            else:
                kind, message = expected_error(script)
                with pytest.raises(Kamstrup382Error) as info:
                    reader.read()
                check_error(info.value, kind, message, first=attempt == 0)
            assert time.monotonic() - started < 5.0
    assert gateway.sent >= 2 * 1024 * 1024, gateway.sent
    assert peak[0] < MEMORY_BOUND, (peak[0], gateway.sent)


async def test_bytes_dropped_between_attempts_are_counted_and_logged_with_the_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kamstrup382.reader")
    with FloodGateway("between attempts") as gateway:
        async with AsyncReader(
            f"socket://127.0.0.1:{gateway.port}", line="7E1", timing=timing(), retries=0
        ) as reader:
            for _ in range(4):
                assert (await reader.read()).raw == EXAMPLE
                await asyncio.sleep(0.3)  # the gateway floods meanwhile
            link = reader._link
            assert isinstance(link, AsyncTcpLink)
            discarded = link.discarded
    assert discarded > 1024 * 1024
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("kamstrup382.reader")
    ]
    # one warning a minute at most: the later floods add up silently until the next one
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert message.startswith(f"127.0.0.1:{gateway.port}: dropped ")
    assert "outside a readout" in message
    dropped = int(message.split("dropped ")[1].split()[0])
    assert KEEP < dropped <= discarded


#: Bytes the RFC 2217 tests wait to see dropped (64 times what is kept), for up to
#: FLOOD_PATIENCE seconds (a guard: on an idle machine it takes a second or two).
FLOODED = 256 * 1024
FLOOD_PATIENCE = 60.0
#: After each reply: more than the bound, less than pyserial's RFC 2217 thread (a Python loop
#: per byte) gets through before the next request, whose purge answer queues behind it.
RFC2217_FLOOD = 512 * 1024
PYSERIAL_THREADS = "ignore:set(Daemon|Name).. is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(PYSERIAL_THREADS)
def test_rfc2217_keeps_at_most_keep_bytes_of_a_flood() -> None:
    """pyserial's RFC 2217 client queues all it receives, read or not: ours drops beyond KEEP.

    The gateway (pyserial's RFC 2217 server in front of the flooding one) streams megabytes
    after each reply; the reader's memory stays flat and the drops are counted."""
    with (
        FloodGateway("between attempts", RFC2217_FLOOD) as gateway,
        Rfc2217Bridge(f"socket://127.0.0.1:{gateway.port}") as bridge,
        peak_memory() as peak,
        Reader(bridge.port, line="7E1", timing=timing(), retries=1) as reader,
    ):
        for _ in range(3):
            assert reader.read().raw == EXAMPLE
            time.sleep(1.0)  # the gateway floods meanwhile
        link = reader._link
        assert isinstance(link, SerialLink)
        # unread, the flood goes on (at the pace of a busy machine): it is dropped
        deadline = time.monotonic() + FLOOD_PATIENCE
        while link.discarded <= FLOODED and time.monotonic() < deadline:
            time.sleep(0.1)
        discarded = link.discarded
    assert peak[0] < MEMORY_BOUND, (peak[0], gateway.sent)
    assert discarded > FLOODED, (discarded, gateway.sent)


@pytest.mark.filterwarnings(PYSERIAL_THREADS)
async def test_rfc2217_keeps_at_most_keep_bytes_of_a_flood_async() -> None:
    with (
        FloodGateway("between attempts", RFC2217_FLOOD) as gateway,
        Rfc2217Bridge(f"socket://127.0.0.1:{gateway.port}") as bridge,
        peak_memory() as peak,
    ):
        async with AsyncReader(bridge.port, line="7E1", timing=timing(), retries=1) as reader:
            for _ in range(3):
                assert (await reader.read()).raw == EXAMPLE
                await asyncio.sleep(1.0)
            link = reader._link
            assert isinstance(link, AsyncThreadLink)
            deadline = time.monotonic() + FLOOD_PATIENCE
            while link.discarded <= FLOODED and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # polling the link's own count
            discarded = link.discarded
    assert peak[0] < MEMORY_BOUND, (peak[0], gateway.sent)
    assert discarded > FLOODED, (discarded, gateway.sent)
