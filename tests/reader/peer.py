"""A scripted peer for reader tests: what the emulator cannot play, on loopback TCP or a pty.

The reader tests use the emulator and its faults (:mod:`kamstrup382.emulator.faults`) for
everything a meter does. This peer plays what the emulator, a faithful half-duplex meter,
never does: an optical head's echo, a gateway's hangup or replay, a reply with a broken
frame, a pause in mid-reply, a line that never stops talking, a late answer abandoned when
the request comes again (the meter does not listen until it has answered), and meters that
wait for each other (``gate``).

Each request (``/?!`` CR LF, with or without parity bits) is answered by the next action of the
script; when the script is used up, the last action repeats. Actions:

- ``answer``: the reply (the specification's example) after ``delay``;
- ``silent``: nothing;
- ``echo``: the request echoed back (as an optical head does), then the reply;
- ``noise``: bytes without ``/`` before the reply (in a script with an ``echo``);
- ``late``: the reply, :data:`LATE_BY` seconds after the request, unless a new request comes
  first;
- ``stall``: the first 100 bytes, a pause of :data:`STALL_FOR` seconds, the rest;
- ``framing``: the reply with its STX replaced by ``X``;
- ``double``: the reply, twice (the second copy is stale input for the next request);
- ``endless``: a byte without ``/`` every 10 ms until the next request;
- ``hangup``: close the connection (TCP) without answering.

``eight_bit``: the wire carries the even-parity bit (a TCP gateway, an 8N1 head). ``gate``: a
:class:`Gate` shared by several peers: none answers before all of them have got a request.

Also here: :class:`EchoingHead` (an echoing proxy in front of an emulator) and
:class:`Rfc2217Bridge` (an RFC 2217 gateway in front of one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kamstrup382.protocol import add_parity, strip_parity

EXAMPLE = (Path(__file__).parent.parent / "data" / "spec-example.bin").read_bytes()
#: Seconds after the request a ``late`` reply comes (past the reader's answer timeout).
LATE_BY = 0.5
#: Seconds a ``stall`` pauses in mid-reply (past the reader's inter-character timeout).
STALL_FOR = 0.5


class Gate:
    """Opens once ``count`` requests have arrived (at any of the peers sharing it)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._arrived = 0
        self._lock = threading.Lock()
        self.opened = threading.Event()

    def arrive(self) -> None:
        with self._lock:
            self._arrived += 1
            if self._arrived >= self.count:
                self.opened.set()


class ScriptedPeer:
    def __init__(
        self,
        *script: str,
        transport: str = "tcp",
        eight_bit: bool | None = None,
        delay: float = 0.005,
        gate: Gate | None = None,
    ) -> None:
        self.gate = gate
        self.script = list(script) or ["answer"]
        self.transport = transport
        self.eight_bit = transport == "tcp" if eight_bit is None else eight_bit
        self.delay = delay
        self.requests = 0
        self.port = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._master = -1
        self._slave = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self._pty_buf = b""

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ScriptedPeer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        if self.transport == "tcp":
            self._server = await asyncio.start_server(self._serve_tcp, "127.0.0.1", 0)
            host, port = self._server.sockets[0].getsockname()[:2]
            self.port = f"socket://{host}:{port}"
        else:
            self._master, self._slave = os.openpty()
            self.port = os.ttyname(self._slave)
            os.set_blocking(self._master, False)
            self._loop.add_reader(self._master, self._pty_readable)

    async def _stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
        if self._master >= 0:
            self._loop.remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)

    # -- the meter ---------------------------------------------------------------------------

    def _next_action(self) -> str:
        action = self.script[min(self.requests, len(self.script) - 1)]
        self.requests += 1
        return action

    def _wire(self, data: bytes) -> bytes:
        return add_parity(data) if self.eight_bit else data

    def _spawn(self, send: Callable[[bytes], None], close: Callable[[], None]) -> None:
        for task in list(self._tasks):
            task.cancel()  # a new request ends an endless reply
        task = self._loop.create_task(self._answer(self._next_action(), send, close))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, action: str, send: Callable[[bytes], None], close: Callable[[], None]
    ) -> None:
        reply = EXAMPLE
        if self.gate is not None:
            self.gate.arrive()
            await asyncio.to_thread(self.gate.opened.wait, 10)
        if action == "silent":
            return
        if action == "hangup":
            close()
            return
        if action == "endless":
            while True:
                send(self._wire(b"x"))
                await asyncio.sleep(0.01)
        if action == "echo":
            send(self._wire(b"/?!\r\n"))
        await asyncio.sleep(LATE_BY if action == "late" else self.delay)
        if action == "noise":
            send(self._wire(b"\x00zz\r\n"))
        elif action == "framing":
            reply = reply.replace(b"\x02", b"X", 1)
        elif action == "double":
            reply = reply + reply
        wire = self._wire(reply)
        if action == "stall":
            send(wire[:100])
            await asyncio.sleep(STALL_FOR)
            wire = wire[100:]
        send(wire)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\n")
                if strip_parity(line).endswith(b"/?!\r\n"):
                    self._spawn(writer.write, writer.close)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _pty_readable(self) -> None:
        try:
            self._pty_buf += os.read(self._master, 1024)
        except (BlockingIOError, OSError):
            return
        while b"\n" in self._pty_buf:
            line, self._pty_buf = self._pty_buf.split(b"\n", 1)
            if strip_parity(line + b"\n").endswith(b"/?!\r\n"):
                self._spawn(self._pty_write, lambda: None)

    def _pty_write(self, data: bytes) -> None:
        os.write(self._master, data)


class EchoingHead:
    """A TCP proxy in front of a meter that echoes back what the reader sends (as optical
    heads on a shared RX/TX line do), in the running event loop."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("socket://").rpartition(":")
        self.upstream = (host, int(port))
        self.port = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Future[tuple[None, None]]] = set()

    async def __aenter__(self) -> EchoingHead:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.port = f"socket://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, echo: bool) -> None:
            while data := await src.read(4096):
                if echo:
                    writer.write(data)
                dst.write(data)
            dst.close()

        task = asyncio.ensure_future(
            asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        )
        self._tasks.add(task)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await task
        self._tasks.discard(task)
        writer.close()
        up_writer.close()


class Rfc2217Bridge:
    """An RFC 2217 server (pyserial's ``PortManager``) whose serial side is a meter on
    ``upstream`` (a pyserial URL): ``rfc2217://127.0.0.1:PORT`` in front of an emulator.
    Serves one connection at a time, in a thread."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.settings: list[dict[str, object]] = []  # what the client asked for, per session
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = f"rfc2217://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Rfc2217Bridge:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        import serial
        from serial import rfc2217

        class Connection:
            def write(self, data: bytes) -> None:
                with contextlib.suppress(OSError):
                    conn.sendall(data)

        ser = serial.serial_for_url(self.upstream, timeout=0.01)
        manager = rfc2217.PortManager(ser, Connection())
        done = threading.Event()

        def pump_up() -> None:
            while not done.is_set():
                data = ser.read(4096)
                if data:
                    Connection().write(b"".join(manager.escape(data)))

        pump = threading.Thread(target=pump_up, daemon=True)
        pump.start()
        try:
            while not self._stop.is_set():
                data = conn.recv(4096)
                if not data:
                    break
                ser.write(b"".join(manager.filter(data)))
        except OSError:
            pass
        finally:
            self.settings.append(ser.get_settings())
            done.set()
            pump.join(5)
            ser.close()
