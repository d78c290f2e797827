"""Request gates: many readouts' requests written at one instant, by one loop callback.

A collector connects thousands of meters ahead of a slot and sends their requests at its start.
Woken one by one (a timer and a task step each), the readers take a long while to get ten
thousand requests out (figures: ``docs/collector.md``). With a :class:`RequestGate`, each
reader prepares its readout ahead (``AsyncReader.read(gate=...)``: the port open, the readout
and its decoder built) and waits; :meth:`RequestGate.open` then writes every prepared request in
one pass, through each link's :meth:`~kamstrup382.reader.aio_links.AsyncLink.immediate` side:
the input received so far is dropped, the request written, the readout's timing started and its
reply routed to it, exactly as the reader does it. The readers' coroutines are not woken at the
start at all, only when their readouts end. Readers whose links have no immediate side (serial
devices) are woken and write their requests themselves.

:class:`StartGates` keeps the collector's gates, one per start time, each opened by one task
when the collector's clock shows its time (or closed, when the collector stops first).

Time sources: a request's time is taken with ``time.monotonic`` (the clock of asyncio's and
uvloop's ``loop.time()``, which the readout's timeouts use) and, for
:attr:`~kamstrup382.reader.reading.Reading.requested_at`, the wall clock; the start times are the
collector's clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kamstrup382.clock import Clock
from kamstrup382.collector.waits import wait_first
from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.reader.aio_links import AsyncLink, ImmediateLink
from kamstrup382.reader.session import Progress, Readout

__all__ = ["GateClosed", "RequestGate", "StartGates", "TimedGate"]


class GateClosed(UsageError):
    """The :class:`RequestGate` was closed instead of opened: the request was not sent.

    A usage error, not a line error: the caller stopped the readout, the reader does not try
    again.
    """

    kind = "gate_closed"


#: A request the gate writes: the reader's future (its outcome: None or the readout's error),
#: its link's immediate side, its prepared readout and progress callback.
_Prepared = tuple[asyncio.Future[BaseException | None], ImmediateLink, Readout, Progress | None]


class RequestGate:
    """Holds the requests of many readers and writes them all when :meth:`open` is called.

    Implements :class:`kamstrup382.reader.aio.Gate`. :meth:`close` instead: every waiting
    reader raises :class:`GateClosed`, nothing is sent.
    """

    __slots__ = ("_closed", "_opened", "_prepared", "_waiting", "opened_at", "opened_mono")

    def __init__(self) -> None:
        self._prepared: list[_Prepared] = []
        self._waiting: list[asyncio.Future[None]] = []  # readers that write themselves
        self._opened = False
        self._closed = False
        #: ``time.monotonic()`` and the wall clock when the gate opened.
        self.opened_mono = 0.0
        self.opened_at: datetime | None = None

    async def wait(self) -> None:
        """Until the gate opens (raises :class:`GateClosed` if it is closed instead)."""
        if self._closed:
            raise GateClosed("the request gate was closed")
        if self._opened:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        await future

    async def send(self, link: AsyncLink, readout: Readout, progress: Progress | None) -> bool:
        """Write ``readout``'s request on ``link`` when the gate opens and receive its reply
        (True; raises the readout's error); False: the gate is open already, or ``link`` has no
        immediate side, the caller writes and receives it now."""
        immediate = link.immediate()
        if immediate is None:
            await self.wait()
            return False
        if self._closed:
            raise GateClosed("the request gate was closed")
        if self._opened:
            return False
        future: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._prepared.append((future, immediate, readout, progress))
        try:
            outcome = await future
        finally:
            immediate.end_receive(readout)  # cancelled while receiving: bytes are kept
        if outcome is not None:
            raise outcome
        return True

    def open(self) -> None:
        """Write every prepared request now, then wake the readers that write themselves."""
        self._opened = True
        prepared, self._prepared = self._prepared, []
        waiting, self._waiting = self._waiting, []
        # the writes back to back, each request's time taken as it goes out (nothing can
        # arrive meanwhile: this is one callback) ...
        monotonic = time.monotonic
        self.opened_mono = opened = monotonic()
        self.opened_at = wall = datetime.now(UTC)
        sent: list[tuple[float, _Prepared]] = []
        for entry in prepared:
            future, immediate, readout, _progress = entry
            if future.done():  # cancelled while waiting: nothing sent
                continue
            try:
                immediate.write_now(readout.request)
            except Kamstrup382Error as error:
                future.set_result(error)
                continue
            sent.append((monotonic(), entry))
        # ... then each readout's timing starts from its request's time, and its reply goes
        # straight to it; its coroutine wakes when the readout is over
        for at, (future, immediate, readout, progress) in sent:
            readout.sent(at, wall + timedelta(seconds=at - opened))
            immediate.begin_receive(readout, progress, future)
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Send nothing: every reader waiting, and every reader that comes later, raises
        :class:`GateClosed`."""
        self._closed = True
        prepared, self._prepared = self._prepared, []
        waiting, self._waiting = self._waiting, []
        for future in [entry[0] for entry in prepared] + waiting:
            if not future.done():
                future.set_exception(GateClosed("the request gate was closed"))


@dataclass(eq=False)
class TimedGate:
    """A :class:`RequestGate` for one start time, and the collector's clock when it opened."""

    gate: RequestGate
    stop: asyncio.Event | None
    #: The collector's clock when the gate opened (None: not yet, or closed).
    opened_at: datetime | None = None


class StartGates:
    """The request gates of a collector, one per start time (of ``clock``).

    Each gate is opened by one task when ``clock`` shows its start time, or closed if its
    ``stop`` event is set first (or the gates are closed).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._gates: dict[datetime, TimedGate] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def at(self, start_at: datetime, stop: asyncio.Event | None) -> TimedGate:
        """The gate of the readouts that start at ``start_at`` (and stop with ``stop``)."""
        timed = self._gates.get(start_at)
        if timed is None or timed.stop is not stop:
            timed = TimedGate(RequestGate(), stop)
            self._gates[start_at] = timed
            task = asyncio.create_task(self._open_at(start_at, timed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return timed

    async def close(self) -> None:
        """Close every gate not yet open (its readers raise :class:`GateClosed`)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _open_at(self, start_at: datetime, timed: TimedGate) -> None:
        opened = False
        try:
            if timed.stop is None:
                await self.clock.sleep_until(start_at)
            else:
                await wait_first(self.clock.sleep_until(start_at), timed.stop.wait())
                if timed.stop.is_set():
                    return
            timed.opened_at = self.clock.now()
            if self._gates.get(start_at) is timed:
                del self._gates[start_at]
            timed.gate.open()
            opened = True
        finally:
            if self._gates.get(start_at) is timed:
                del self._gates[start_at]
            if not opened:
                timed.gate.close()
