"""A link's inbox: where the bytes of an asyncio link go (the readout in progress, a taker, or
nowhere), and how many were dropped.

While a readout runs, each chunk goes straight to its decoder (:meth:`Inbox.feed`); the inbox
wakes the coroutine awaiting the readout once, when it ends, and watches its timeout with one
timer (see :mod:`kamstrup382.reader.aio_links`). Outside a readout at most :data:`KEEP` bytes
are kept, and only for a taker (after a flush, or to drain a failed reply's tail); the rest is
dropped and counted in ``discarded``. Before each attempt (:meth:`Inbox.flush`) and at close
(:meth:`Inbox.report_discarded`) the bytes dropped since the last report are logged with the
link's name (:class:`~kamstrup382.reader.link.DiscardLog`: debug, or a warning at most once a
minute when more than :data:`KEEP`).
"""

from __future__ import annotations

import asyncio

from kamstrup382.errors import ConnectionLost
from kamstrup382.reader.link import KEEP, DiscardLog
from kamstrup382.reader.session import Progress, Readout

__all__ = ["KEEP", "Inbox", "release"]


class Inbox:
    """A link's bytes: to the readout, kept for a taker, or dropped (see the module doc)."""

    __slots__ = (
        "_armed_at",
        "_buf",
        "_discards",
        "_done",
        "_keeping",
        "_loop",
        "_lost",
        "_progress",
        "_readout",
        "_timer",
        "_waiter",
        "discarded",
        "name",
    )

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self._loop = loop
        self._buf = bytearray()
        self._keeping = False  # whether bytes outside a readout have a taker (see _finish)
        self.discarded = 0  # bytes dropped in all
        self._discards = DiscardLog(name)
        self._lost: str | None = None
        self._waiter: asyncio.Future[None] | None = None  # a read() waiting for bytes
        # the running readout: where the bytes go, and what ends it
        self._readout: Readout | None = None
        self._progress: Progress | None = None
        self._done: asyncio.Future[BaseException | None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def feed(self, data: bytes) -> None:
        readout = self._readout
        if readout is None:
            self._keep(data)
            return
        try:
            done = readout.receive(data, self._loop.time())
            progress = self._progress
            if progress is not None:
                received = readout.received
                progress(received, max(readout.expected, received))
        except Exception as error:  # the readout's error (or the progress callback's)
            self._finish(error)
            return
        if done:
            self._finish(None)
        elif readout.timeout_at < self._armed_at:
            self._arm(readout.timeout_at)

    def _keep(self, data: bytes) -> None:
        """Outside a readout: keep ``data`` for :meth:`read` (within :data:`KEEP`), or drop it."""
        room = KEEP - len(self._buf) if self._keeping else 0
        if room < len(data):
            self.discarded += len(data) - max(room, 0)
            data = data[: max(room, 0)]
            if not data:
                return
        self._buf += data
        if self._waiter is not None:
            release(self._waiter)

    def lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        if self._readout is not None:
            self._finish(ConnectionLost(f"{self.name}: {reason}"))
        elif self._waiter is not None:
            release(self._waiter)

    @property
    def is_lost(self) -> bool:
        """The connection was lost (or the device went away)."""
        return self._lost is not None

    def report_discarded(self) -> None:
        """Log the bytes dropped since the last report (see the module doc)."""
        self._discards.report(self.discarded, self._loop.time())

    def flush(self) -> None:
        """Drop what came so far; keep what comes next, for the readout about to begin."""
        self.discarded += len(self._buf)
        self.report_discarded()
        self._buf.clear()
        self._keeping = True
        self._check()

    @property
    def kept(self) -> int:
        """Bytes kept now outside a readout (at most :data:`KEEP`)."""
        return len(self._buf)

    def _check(self) -> None:
        if self._lost is not None:
            raise ConnectionLost(f"{self.name}: {self._lost}")

    def _take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data

    async def read(self, timeout_at: float) -> bytes:
        self._keeping = True
        if self._buf:
            return self._take()
        self._check()
        loop = self._loop
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_at(timeout_at, release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._buf:
            return self._take()
        self._check()
        return b""

    async def receive(self, readout: Readout, progress: Progress | None) -> None:
        done: asyncio.Future[BaseException | None] = self._loop.create_future()
        try:
            self.begin(readout, progress, done)
            outcome = await done
        finally:
            self.cancel(readout)
        if outcome is not None:
            raise outcome

    def begin(
        self,
        readout: Readout,
        progress: Progress | None,
        done: asyncio.Future[BaseException | None],
    ) -> None:
        """Start receiving ``readout`` (its request sent): ``done`` gets its outcome, an error
        or None."""
        now = self._loop.time()
        if now >= readout.timeout_at:
            done.set_result(readout.expired(now))
            return
        self._done = done
        self._readout = readout
        self._progress = progress
        if self._buf:  # arrived since the flush (while the request was being written)
            self.feed(self._take())
        if self._readout is readout:
            if self._lost is not None:
                self._finish(ConnectionLost(f"{self.name}: {self._lost}"))
            else:
                self._arm(readout.timeout_at)

    def cancel(self, readout: Readout) -> None:
        """No longer waiting for ``readout`` (if it still runs): bytes from now on are dropped."""
        if self._readout is readout:
            self._finish(None)

    def _arm(self, at: float) -> None:
        timer = self._timer
        if timer is not None:
            timer.cancel()
        self._armed_at = at
        self._timer = self._loop.call_at(at, self._expire)

    def _expire(self) -> None:
        """The timer: the readout's timeout has passed, or moved later since it was armed."""
        self._timer = None
        readout = self._readout
        if readout is None:
            return
        timeout_at = readout.timeout_at
        if self._loop.time() < timeout_at:
            self._arm(timeout_at)
            return
        # Past it, unless bytes that came in time are still unread: a loop that fell behind
        # (busy, a pause) may run its timers before it polls for input (uvloop always does).
        # The verdict comes two callbacks later, after the loop's next poll.
        self._loop.call_soon(self._loop.call_soon, self._verdict, readout)

    def _verdict(self, readout: Readout) -> None:
        if self._readout is not readout:  # finished meanwhile
            return
        now = self._loop.time()
        timeout_at = readout.timeout_at
        if now >= timeout_at:
            self._finish(readout.expired(now))
        elif self._timer is None or timeout_at < self._armed_at:
            self._arm(timeout_at)

    def _finish(self, outcome: BaseException | None) -> None:
        """The readout is over: wake its coroutine with ``outcome`` (an error, or None)."""
        self._readout = None
        self._keeping = outcome is not None  # a failed reply's tail is drained by read()
        self._progress = None
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        done = self._done
        self._done = None
        if done is not None and not done.done():
            done.set_result(outcome)


def release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
