"""The asyncio links under :class:`~kamstrup382.reader.aio.AsyncReader`: TCP, serial devices,
pyserial's blocking URLs.

- ``socket://host:port``: an asyncio TCP connection (``loop.create_connection``).
- a serial device: pyserial opens and configures it (in a worker thread, since opening a real
  device may block), then the event loop watches its non-blocking file descriptor with
  ``loop.add_reader``; nothing blocks while waiting for bytes.
- ``rfc2217://`` and other pyserial URLs have only pyserial's blocking client: each wait for
  bytes runs in a worker thread (the one exception to the rule above).

**Per chunk, as little as possible.** A collector reads thousands of meters in one loop, and a
gateway delivers each reply in some thirty chunks, so the cost of one chunk is what limits it.
While a readout runs, the TCP protocol's ``buffer_updated`` (or the device's reader callback)
feeds each chunk straight to the readout's decoder: no future, no task switch, no timer per
chunk. The coroutine that awaits the readout is woken once, when the telegram is complete, an
error ends it, its timeout passes or the connection is lost. One ``loop.call_at`` timer watches
the timeout: it is armed at the readout's :attr:`~kamstrup382.reader.session.Readout.timeout_at`;
bytes that arrive only move that time later, so the timer is not touched for them, and when it
fires it looks again: past the timeout, the readout fails with the phase's
:class:`~kamstrup382.errors.ReadTimeout` (decided after the loop's next poll for input, so that
bytes which came in time but are not yet read, because the loop fell behind, still count),
otherwise it is armed at the new time. It is
re-armed early only when a chunk brings the timeout forward (the answer window giving way to the
shorter inter-character timeout: once a readout). A readout still ends the moment its BCC is
read, and times out when the readout says, as before.

**Bounded, whatever the other side sends.** Outside a readout, at most :data:`KEEP` bytes are
kept, and only for a taker: from a flush until the readout begins, and after a failed readout
(its tail is drained with :meth:`AsyncLink.read`). The rest (an endless gateway, bytes after a
BCC) is dropped and counted (``inbox.discarded``); a decoder keeps at most ``max_reply`` bytes.

**Writing at an instant.** A link whose write never waits (TCP: the transport buffers it) also
offers :meth:`AsyncLink.immediate`: an :class:`ImmediateLink` whose calls all run inside one
event loop callback, so that a caller can write many links' requests back to back at one
instant and route each reply to its readout without waking a coroutine per link (the
collector's request gate, :mod:`kamstrup382.collector.gate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from typing import Protocol

import serial

from kamstrup382.errors import ConnectionLost
from kamstrup382.reader.link import CHUNK, Link, SerialLink, open_serial
from kamstrup382.reader.options import ReaderOptions
from kamstrup382.reader.port import LineMode, PortKind
from kamstrup382.reader.session import Progress, Readout

__all__ = [
    "AsyncFdLink",
    "AsyncLink",
    "AsyncTcpLink",
    "AsyncThreadLink",
    "ImmediateLink",
    "open_async_link",
]


#: Bytes one receive on a TCP connection takes at most (a whole reply fits; more is read next).
RECEIVE_BUFFER = 1024
#: Bytes kept outside a readout at most (twice the default largest reply); more are dropped.
KEEP = 4096
#: Reads of a device per loop callback at most: a line that never stops cannot hold the loop.
MAX_READS_PER_CALLBACK = 8


class ImmediateLink(Protocol):
    """The side of a link that works without awaiting, inside one event loop callback.

    The order of use: :meth:`write_now` (the request goes out), then :meth:`begin_receive`
    (the reply goes to the readout, whose timing started when the request went out); once the
    caller no longer waits for the outcome (it came, or the caller was cancelled),
    :meth:`end_receive`.
    """

    def write_now(self, data: bytes) -> None:
        """Drop the input received so far and write ``data`` now.

        Raises :class:`~kamstrup382.errors.ConnectionLost` when the link is closed (nothing is
        written then).
        """

    def begin_receive(
        self,
        readout: Readout,
        progress: Progress | None,
        done: asyncio.Future[BaseException | None],
    ) -> None:
        """Feed the reply to ``readout`` as it arrives; ``done`` gets the outcome: None when
        its telegram is complete, else the error that ended it (as :meth:`AsyncLink.receive`
        raises it)."""

    def end_receive(self, readout: Readout) -> None:
        """No longer feed ``readout`` (if it still runs): bytes from now on are dropped."""


class AsyncLink(Protocol):
    """What :class:`~kamstrup382.reader.aio.AsyncReader` needs of a port."""

    async def flush_input(self) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def read(self, timeout_at: float) -> bytes:
        """Bytes received, as soon as there are any; ``b""`` at ``timeout_at`` (loop time)."""

    async def receive(self, readout: Readout, progress: Progress | None) -> None:
        """Feed the reply to ``readout`` as it arrives, until its telegram is complete.

        Raises what ends it otherwise: the readout's error, its
        :meth:`~kamstrup382.reader.session.Readout.expired` timeout, ConnectionLost.
        """

    @property
    def lost(self) -> bool:
        """Known to be closed or gone (the gateway closed the connection, the device went
        away): open a new link before the next readout. False where the link finds out only
        when it is used."""

    def immediate(self) -> ImmediateLink | None:
        """This link's :class:`ImmediateLink`, or None where a write may have to wait (serial
        devices, pyserial's blocking client): the caller then awaits :meth:`write`."""

    async def close(self) -> None: ...


class _Inbox:
    """A link's bytes: to the readout, kept for a taker, or dropped (see the module doc)."""

    __slots__ = (
        "_armed_at",
        "_buf",
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
        self.discarded = 0
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
            _release(self._waiter)

    def lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        if self._readout is not None:
            self._finish(ConnectionLost(f"{self.name}: {reason}"))
        elif self._waiter is not None:
            _release(self._waiter)

    @property
    def is_lost(self) -> bool:
        """The connection was lost (or the device went away)."""
        return self._lost is not None

    def flush(self) -> None:
        """Drop what came so far; keep what comes next, for the readout about to begin."""
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
        timer = loop.call_at(timeout_at, _release, waiter)
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


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _receive_by_reads(link: AsyncLink, readout: Readout, progress: Progress | None) -> None:
    """:meth:`AsyncLink.receive` for a link that only has :meth:`AsyncLink.read`."""
    loop = asyncio.get_running_loop()
    while True:
        timeout_at = readout.timeout_at
        if loop.time() >= timeout_at:
            raise readout.expired(loop.time())
        data = await link.read(timeout_at)
        if not data:
            continue
        done = readout.receive(data, loop.time())
        if progress is not None:
            progress(readout.received, max(readout.expected, readout.received))
        if done:
            return


class _TcpProtocol(_Inbox, asyncio.BufferedProtocol):
    """The TCP connection's protocol is its inbox.

    A buffered protocol: the transport receives into this connection's small buffer. (The
    default loop's plain protocol receives into a fresh 256 KiB bytes object per chunk, which
    the allocator maps and unmaps every time: most of the collector's system time.)
    """

    __slots__ = ("_received", "_view")

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name, loop)
        self._received = bytearray(RECEIVE_BUFFER)
        self._view = memoryview(self._received)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self._readout is None and not self._keeping:  # between attempts: not even copied
            self.discarded += nbytes
            return
        self.feed(self._view[:nbytes].tobytes())

    def eof_received(self) -> bool | None:
        self.lost("connection closed by the gateway")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost(f"connection lost: {exc}" if exc else "connection closed")


class AsyncTcpLink:
    """``socket://host:port``."""

    def __init__(self, transport: asyncio.Transport, inbox: _TcpProtocol) -> None:
        self.transport = transport
        self.inbox = inbox

    @classmethod
    async def connect(cls, host: str, port: int, *, connect_timeout: float) -> AsyncTcpLink:
        loop = asyncio.get_running_loop()
        name = f"{host}:{port}"
        try:
            async with asyncio.timeout(connect_timeout):
                transport, inbox = await loop.create_connection(
                    lambda: _TcpProtocol(name, loop), host, port
                )
        except (OSError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise ConnectionLost(f"cannot connect to {host}:{port}: {reason}") from exc
        return cls(transport, inbox)

    @property
    def lost(self) -> bool:
        """Closed, by either side (the gateway, or the network)."""
        return self.transport.is_closing() or self.inbox.is_lost

    async def flush_input(self) -> None:
        self.inbox.flush()

    async def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionLost(f"{self.inbox.name}: connection closed")
        self.transport.write(data)

    async def read(self, timeout_at: float) -> bytes:
        return await self.inbox.read(timeout_at)

    async def receive(self, readout: Readout, progress: Progress | None) -> None:
        await self.inbox.receive(readout, progress)

    def immediate(self) -> ImmediateLink:
        """The transport buffers every write: this link writes at once."""
        return self

    def write_now(self, data: bytes) -> None:
        self.inbox.flush()
        if self.transport.is_closing():
            raise ConnectionLost(f"{self.inbox.name}: connection closed")
        self.transport.write(data)

    def begin_receive(
        self,
        readout: Readout,
        progress: Progress | None,
        done: asyncio.Future[BaseException | None],
    ) -> None:
        self.inbox.begin(readout, progress, done)

    def end_receive(self, readout: Readout) -> None:
        self.inbox.cancel(readout)

    async def close(self) -> None:
        self.transport.close()


class AsyncFdLink:
    """A serial device's non-blocking file descriptor, watched by the event loop."""

    def __init__(self, ser: serial.Serial, name: str) -> None:
        self.ser = ser
        self.fd: int = ser.fileno()
        self._loop = asyncio.get_running_loop()
        self.inbox = _Inbox(name, self._loop)
        os.set_blocking(self.fd, False)
        self._loop.add_reader(self.fd, self._readable)
        self._watching = True

    @classmethod
    async def open(cls, port: str, *, line: LineMode, baudrate: int) -> AsyncFdLink:
        ser = await asyncio.to_thread(open_serial, port, line=line, baudrate=baudrate)
        try:
            return cls(ser, port)
        except OSError as exc:  # a file the event loop cannot watch
            await asyncio.to_thread(ser.close)
            raise ConnectionLost(f"cannot watch {port}: {exc}") from exc
        except BaseException:
            await asyncio.to_thread(ser.close)
            raise

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self.fd)

    def _readable(self, *, polled: bool = False) -> None:
        """Read what is there. Called by the loop when the fd is readable, where an empty
        read means the device is gone; ``polled`` when called to look (VMIN = 0: empty is
        nothing there)."""
        first = not polled
        for _ in range(MAX_READS_PER_CALLBACK):
            try:
                data = os.read(self.fd, CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                self._unwatch()
                self.inbox.lost(f"read failed: {exc}")
                return
            if not data:
                if first:
                    self._unwatch()
                    self.inbox.lost("device disconnected")
                return
            first = False
            self.inbox.feed(data)
            if len(data) < CHUNK:
                return

    async def flush_input(self) -> None:
        with contextlib.suppress(termios.error):
            termios.tcflush(self.fd, termios.TCIFLUSH)
        if self._watching:
            self._readable(polled=True)
        self.inbox.flush()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                await self._writable()
                continue
            except OSError as exc:
                raise ConnectionLost(f"{self.inbox.name}: write failed: {exc}") from exc
            view = view[written:]

    async def _writable(self) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()
        self._loop.add_writer(self.fd, _release, ready)
        try:
            await ready
        finally:
            self._loop.remove_writer(self.fd)

    async def read(self, timeout_at: float) -> bytes:
        return await self.inbox.read(timeout_at)

    async def receive(self, readout: Readout, progress: Progress | None) -> None:
        await self.inbox.receive(readout, progress)

    @property
    def lost(self) -> bool:
        """The device went away (or failed) while the event loop watched it."""
        return self.inbox.is_lost

    def immediate(self) -> None:
        """A device's write may have to wait for the line (:meth:`write` awaits it)."""
        return None

    async def close(self) -> None:
        self._unwatch()
        await asyncio.to_thread(self.ser.close)


class AsyncThreadLink:
    """A blocking pyserial link (``rfc2217://``, other URLs) with its waits in a worker thread."""

    def __init__(self, link: Link) -> None:
        self.link = link

    @classmethod
    async def open(cls, port: str, *, line: LineMode, baudrate: int) -> AsyncThreadLink:
        ser = await asyncio.to_thread(open_serial, port, line=line, baudrate=baudrate)
        return cls(SerialLink(ser, port))

    async def flush_input(self) -> None:
        await asyncio.to_thread(self.link.flush_input)

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.link.write, data)

    async def read(self, timeout_at: float) -> bytes:
        wait = timeout_at - asyncio.get_running_loop().time()
        return await asyncio.to_thread(self.link.read, wait)

    async def receive(self, readout: Readout, progress: Progress | None) -> None:
        await _receive_by_reads(self, readout, progress)

    @property
    def lost(self) -> bool:
        """pyserial's blocking client finds out when it is used."""
        return False

    def immediate(self) -> None:
        """Every write runs in a worker thread."""
        return None

    async def close(self) -> None:
        await asyncio.to_thread(self.link.close)


async def open_async_link(options: ReaderOptions) -> AsyncLink:
    spec = options.spec
    if spec.kind is PortKind.SOCKET:
        assert spec.host is not None and spec.tcp_port is not None
        return await AsyncTcpLink.connect(
            spec.host, spec.tcp_port, connect_timeout=options.connect_timeout
        )
    if spec.kind is PortKind.DEVICE:
        return await AsyncFdLink.open(spec.text, line=options.line, baudrate=options.baudrate)
    return await AsyncThreadLink.open(spec.text, line=options.line, baudrate=options.baudrate)
