"""The asyncio reader: many meters in one event loop, no thread per meter.

::

    async with AsyncReader("socket://gw.local:4001") as reader:
        reading = await reader.read()

The port's link (TCP, a serial device, pyserial's blocking URLs) and how it hands each chunk
to the readout are in :mod:`kamstrup382.reader.aio_links`.

:func:`new_event_loop` makes uvloop's event loop where it is installed (its transports and
timers are C, cheaper per readout than asyncio's own loop: see ``bench/bench_collector.py``),
asyncio's otherwise; the reader works the same on both.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

from kamstrup382.errors import ConnectionLost, Kamstrup382Error
from kamstrup382.reader.aio_links import AsyncLink, open_async_link
from kamstrup382.reader.base import ReaderBase
from kamstrup382.reader.options import with_attempts
from kamstrup382.reader.reading import Reading
from kamstrup382.reader.session import Accept, Progress, Readout

__all__ = [
    "AsyncLink",
    "AsyncReader",
    "Gate",
    "new_event_loop",
    "open_async_link",
]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where uvloop is installed, asyncio's default loop otherwise.

    For ``asyncio.Runner(loop_factory=new_event_loop)`` in programs that read many meters.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:  # not installed (Windows, or left out): the default loop works the same
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Gate(Protocol):
    """Holds a reader's first request until a moment chosen elsewhere.

    The collector's :class:`~kamstrup382.collector.gate.RequestGate` is one: it writes the
    requests of thousands of readers at one instant. A gate that is closed instead of opened
    raises its error (not a line error: the reader does not retry it) and nothing is sent.
    """

    async def wait(self) -> None:
        """Return when the request may go out."""

    async def send(self, link: AsyncLink, readout: Readout, progress: Progress | None) -> bool:
        """Write ``readout``'s request on ``link`` when the gate opens and receive its reply:
        True (or the readout's error raised). False: the caller writes and receives it now
        (the gate is open, or ``link`` has no :meth:`~AsyncLink.immediate` side)."""


class AsyncReader(ReaderBase[AsyncLink]):
    """The asyncio twin of :class:`~kamstrup382.reader.sync.Reader` (same options)."""

    @functools.cached_property
    def _lock(self) -> asyncio.Lock:
        """Two :meth:`read` calls on one reader take turns."""
        return asyncio.Lock()

    @property
    def connected(self) -> bool:
        """The port is open and not known to be lost (:meth:`open` has nothing to do)."""
        return self._link is not None and not self._link.lost

    async def open(self) -> None:
        """Open the port now (otherwise the first :meth:`read` does, inside its retries).

        A link kept open since an earlier readout and known to be lost meanwhile
        (:attr:`AsyncLink.lost`: the gateway closed the connection, the device went away) is
        opened again.
        """
        link = self._link
        if link is not None and link.lost:
            await self.close()
        await self._ensure_link()

    async def close(self) -> None:
        link, self._link = self._link, None
        self._broken = None
        if link is not None:
            await link.close()

    async def __aenter__(self) -> AsyncReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _ensure_link(self) -> AsyncLink:
        if self._link is None:
            try:
                self._link = await open_async_link(self.options)
            except OSError as exc:  # anything the link did not translate itself
                raise ConnectionLost(f"cannot open {self.port}: {exc}") from exc
        return self._link

    async def read(
        self,
        progress: Progress | None = None,
        *,
        gate: Gate | None = None,
        accept: Accept | None = None,
    ) -> Reading:
        """One readout, with retries; raises the last typed error if every attempt fails.

        Concurrent calls on one reader take turns (one line, one exchange at a time).
        ``gate``: the first attempt is prepared now (the port opened, the readout set up) and
        its request written when the gate opens (see :class:`Gate`); a gate closed instead
        raises its error and nothing is sent. ``accept(reading)`` is called on each complete
        reading: an :class:`~kamstrup382.errors.ImplausibleError` it raises fails that attempt
        (retried like a BCC error, counted in the attempts). It checks, and keeps nothing: the
        reader may still refuse the reading after it.
        """
        async with self._lock:
            return await self._read(progress or self.progress, gate, accept)

    async def _read(
        self, progress: Progress | None, gate: Gate | None = None, accept: Accept | None = None
    ) -> Reading:
        failed = 0
        self.session.begin()
        while True:
            try:
                readout = await self._attempt(progress, gate)
                gate = None
                return self.session.conclude(readout, self.port, failed + 1, accept)
            except Kamstrup382Error as error:
                failed += 1
                if isinstance(error, ConnectionLost):
                    await self.close()
                delay = self.session.next_delay(error, failed)
                if delay is None:
                    self.session.failed()
                    with_attempts(error, failed)
                    raise
                await asyncio.sleep(delay)

    async def _attempt(self, progress: Progress | None, gate: Gate | None = None) -> Readout:
        loop = asyncio.get_running_loop()
        if gate is not None and (self._link is None or self._broken is not None):
            await gate.wait()  # not connected (or a reply to drain): all of it from the start
            gate = None
        link = await self._ensure_link()
        if self._broken is not None:
            broken, limit = self._broken
            self._broken = None
            await self._drain(link, broken, limit)
        await link.flush_input()
        readout = self.session.readout()
        try:
            if gate is None or not await gate.send(link, readout, progress):
                if gate is not None:
                    await link.flush_input()  # what came while waiting for the gate
                await link.write(readout.request)
                readout.sent(loop.time(), datetime.now(UTC))
                await link.receive(readout, progress)
            return readout
        except Kamstrup382Error as error:
            if readout.needs_drain(error):
                self._broken = (readout, readout.drain_limit())
            raise

    @staticmethod
    async def _drain(link: AsyncLink, readout: Readout, limit: float) -> None:
        """Let the rest of a broken reply pass (it must not answer the next request)."""
        loop = asyncio.get_running_loop()
        while True:
            until = min(readout.quiet_at, limit)
            if loop.time() >= until:
                return
            try:
                data = await link.read(until)
            except ConnectionLost:
                return
            if data:
                readout.discard(loop.time())
