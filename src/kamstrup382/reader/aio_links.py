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
BCC) is dropped, counted (:attr:`AsyncLink.discarded`) and logged before the next attempt with
the port's name (:mod:`kamstrup382.reader.inbox`); a decoder keeps at most ``max_reply`` bytes.
``rfc2217://`` keeps at most :data:`KEEP` unread bytes too
(:class:`~kamstrup382.reader.link.BoundedRfc2217Serial`).

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
from kamstrup382.reader.inbox import KEEP, Inbox, release
from kamstrup382.reader.link import CHUNK, SerialLink, open_serial
from kamstrup382.reader.options import ReaderOptions
from kamstrup382.reader.port import LineMode, PortKind
from kamstrup382.reader.session import Progress, Readout

__all__ = [
    "KEEP",
    "AsyncFdLink",
    "AsyncLink",
    "AsyncTcpLink",
    "AsyncThreadLink",
    "ImmediateLink",
    "open_async_link",
]


#: Bytes one receive on a TCP connection takes at most (a whole reply fits; more is read next).
RECEIVE_BUFFER = 1024
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

    @property
    def discarded(self) -> int:
        """Bytes dropped so far: arrived outside a readout, or over a bound (logged with the
        port's name before each attempt)."""

    async def close(self) -> None: ...


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


class _TcpProtocol(Inbox, asyncio.BufferedProtocol):
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

    @property
    def discarded(self) -> int:
        return self.inbox.discarded

    async def close(self) -> None:
        self.inbox.report_discarded()
        self.transport.close()


class AsyncFdLink:
    """A serial device's non-blocking file descriptor, watched by the event loop."""

    def __init__(self, ser: serial.Serial, name: str) -> None:
        self.ser = ser
        self.fd: int = ser.fileno()
        self._loop = asyncio.get_running_loop()
        self.inbox = Inbox(name, self._loop)
        os.set_blocking(self.fd, False)
        self._loop.add_reader(self.fd, self._readable)
        self._watching = True

    @classmethod
    async def open(
        cls, port: str, *, line: LineMode, baudrate: int, stop_bits: int = 1
    ) -> AsyncFdLink:
        ser = await asyncio.to_thread(
            open_serial, port, line=line, baudrate=baudrate, stop_bits=stop_bits
        )
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
        self._loop.add_writer(self.fd, release, ready)
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

    @property
    def discarded(self) -> int:
        return self.inbox.discarded

    async def close(self) -> None:
        self.inbox.report_discarded()
        self._unwatch()
        await asyncio.to_thread(self.ser.close)


class AsyncThreadLink:
    """A blocking pyserial link (``rfc2217://``, other URLs) with its waits in a worker thread."""

    def __init__(self, link: SerialLink) -> None:
        self.link = link

    @classmethod
    async def open(
        cls, port: str, *, line: LineMode, baudrate: int, stop_bits: int = 1
    ) -> AsyncThreadLink:
        ser = await asyncio.to_thread(
            open_serial, port, line=line, baudrate=baudrate, stop_bits=stop_bits
        )
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

    @property
    def discarded(self) -> int:
        return self.link.discarded

    async def close(self) -> None:
        await asyncio.to_thread(self.link.close)


async def open_async_link(options: ReaderOptions) -> AsyncLink:
    spec = options.spec
    if spec.kind is PortKind.SOCKET:
        assert spec.host is not None and spec.tcp_port is not None
        return await AsyncTcpLink.connect(
            spec.host, spec.tcp_port, connect_timeout=options.connect_timeout
        )
    opener = AsyncFdLink.open if spec.kind is PortKind.DEVICE else AsyncThreadLink.open
    return await opener(
        spec.text, line=options.line, baudrate=options.baudrate, stop_bits=options.stop_bits
    )
