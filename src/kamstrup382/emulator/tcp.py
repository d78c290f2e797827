"""Meters on TCP ports: one listening socket per meter, on consecutive ports.

TCP lines send 8-bit bytes with the even-parity bit set, as an 8N1 gateway delivers 7E1
characters (the emulator's ``eight_bit`` default on TCP). Sockets are accepted by hand, with
the loop's reader callbacks (no :class:`asyncio.Server` per meter); each connection is an
asyncio protocol feeding a :class:`~kamstrup382.emulator.line.LineSession`.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from kamstrup382.emulator.line import Answering, LineSession, ServedMeter
from kamstrup382.emulator.open_files import SPARE_FILES, open_file_limit, reserve_files
from kamstrup382.errors import UsageError

__all__ = ["FREE_PORT_RANGE", "TcpLines", "bind_ports", "port_url"]

#: A TCP port range where consecutive free ports are looked for (below Linux's ephemeral ports).
FREE_PORT_RANGE = (20000, 32768)


def port_url(host: str, port: int) -> str:
    """The pyserial URL of a TCP port: ``socket://HOST:PORT``."""
    return f"socket://[{host}]:{port}" if ":" in host else f"socket://{host}:{port}"


def _listening_socket(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_ports(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on consecutive ports from ``port`` (0: free ones)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on host {host!r}: {exc}") from exc
    family = infos[0][0]
    if port and port + count - 1 > 65535:
        raise UsageError(f"{count} meters from port {port} go beyond port 65535")
    if port or count == 1:
        socks: list[socket.socket] = []
        try:
            for p in range(port, port + count) if port else [0]:
                try:
                    socks.append(_listening_socket(family, host, p))
                except OSError as exc:
                    raise UsageError(f"cannot listen on {host} port {p}: {exc.strerror}") from exc
        except BaseException:
            for s in socks:
                s.close()
            raise
        return socks
    lo, hi = FREE_PORT_RANGE
    if count > hi - lo:
        lo, hi = 1024, 65536
    if count > hi - lo:
        raise UsageError(f"{count} meters: not that many TCP ports")
    picker = random.SystemRandom()
    for _ in range(200):
        base = picker.randrange(lo, hi - count + 1)
        socks = []
        try:
            for p in range(base, base + count):
                socks.append(_listening_socket(family, host, p))
        except OSError as exc:
            for s in socks:
                s.close()
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise UsageError(
                    f"{count} meters need {count} listening sockets: too many open files "
                    f"(limit {open_file_limit()})"
                ) from exc
            if exc.errno != errno.EADDRINUSE:
                raise UsageError(f"cannot listen on {host}: {exc.strerror}") from exc
            continue
        return socks
    raise UsageError(f"found no {count} consecutive free TCP ports on {host}")


class _TcpLine(asyncio.Protocol):
    """One accepted connection to one meter."""

    def __init__(
        self, lines: TcpLines, meter: ServedMeter, on_lost: Callable[[], None] | None = None
    ) -> None:
        self.lines = lines
        self.meter = meter
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.session: LineSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.session = LineSession(self.lines.answering, self.meter, self._send)
        self.lines.connections.add(self)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.close()
        self.transport = None
        self.lines.connections.discard(self)
        if self._on_lost is not None:
            self._on_lost()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _TcpListener:
    """The listening socket of one meter, accepting by hand (no :class:`asyncio.Server`).

    ``exclusive``: one reader at a time, as on a meter's single optical port: the listening
    socket is closed while a reader is connected (a second one is refused) and opened again
    when it leaves. It halves the descriptors needed (:class:`TcpLines` turns it on when the
    open-file limit cannot hold a listening and a connected socket for every meter).
    """

    def __init__(
        self, lines: TcpLines, meter: ServedMeter, sock: socket.socket, *, exclusive: bool
    ) -> None:
        self.lines = lines
        self.meter = meter
        self.exclusive = exclusive
        self._loop = asyncio.get_running_loop()
        self._family = sock.family
        self._address: tuple[str, int] = sock.getsockname()[:2]
        self._sock: socket.socket | None = sock
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._loop.add_reader(sock.fileno(), self._accept)

    @property
    def port(self) -> int:
        return self._address[1]

    def _accept(self) -> None:
        for _ in range(32):
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # out of descriptors: stop accepting for a moment (the kernel queues)
                    self._loop.remove_reader(sock.fileno())
                    self._retry = self._loop.call_later(0.1, self._resume)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            conn.setblocking(False)
            if self.exclusive:
                self._stop_listening()
            self.lines.spawn(self._serve(conn))
            if self.exclusive:
                return

    async def _serve(self, conn: socket.socket) -> None:
        def factory() -> _TcpLine:
            return _TcpLine(self.lines, self.meter, self._lost if self.exclusive else None)

        try:
            await self._loop.connect_accepted_socket(factory, sock=conn)
        except OSError:
            conn.close()
            self._lost()

    def _resume(self) -> None:
        self._retry = None
        if self._sock is not None and not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def _stop_listening(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _lost(self) -> None:
        """The exclusive reader left: listen again."""
        if self._closed or self._sock is not None:
            return
        try:
            self._sock = _listening_socket(self._family, *self._address)
        except OSError:  # the port is taken for a moment: try again soon
            self._retry = self._loop.call_later(0.05, self._lost)
            return
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._stop_listening()


class TcpLines:
    """The TCP side of an emulator: listeners, the connections they accepted, their tasks.

    ``port``: the first of the consecutive ports (0: free ones). ``exclusive``: one reader
    per meter at a time (``None``: only when the open-file limit cannot hold two sockets per
    meter). Built inside the running loop.
    """

    def __init__(
        self, answering: Answering, *, host: str, port: int, exclusive: bool | None
    ) -> None:
        self.answering = answering
        self.host = host
        self.port = port
        self.exclusive = exclusive
        self.connections: set[_TcpLine] = set()
        self._listeners: list[_TcpListener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, meters: Sequence[ServedMeter]) -> None:
        """Listen for each meter; sets each meter's ``port`` to its URL."""
        count = len(meters)
        limit = reserve_files("tcp", count)
        exclusive = self.exclusive
        if exclusive is None:
            exclusive = limit < 2 * count + SPARE_FILES
        socks = bind_ports(self.host, self.port, count)
        try:
            for meter, sock in zip(meters, socks, strict=True):
                listener = _TcpListener(self, meter, sock, exclusive=exclusive)
                self._listeners.append(listener)
                meter.port = port_url(self.host, listener.port)
        except BaseException:
            for sock in socks[len(self._listeners) :]:
                sock.close()
            raise

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that :meth:`close` waits for."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening, then hang up every connection."""
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self.connections):
            conn.abort()
