"""The line: emulated meters on TCP ports or pseudo-terminals, paced at 300 baud 7E1.

One event loop serves every meter (one TCP port, or one pty, per meter): asyncio protocols
and timer callbacks, no thread and no task per meter, so that one process serves 10,000
meters. :class:`Emulator` is the async context manager; :class:`EmulatorThread` runs one in
its own thread for synchronous code and tests.

What a line does, as the meter does it:

- It answers only a complete request ``/?!`` CR LF (bit 7 of each received byte, the parity
  bit of an 8-bit line, is ignored) and ignores everything else, noise before the request
  included. While it answers it does not listen (mode A is half duplex); afterwards a reader
  may send the request again.
- Timing is the wire's. A character takes ``1 / 30 / speed`` seconds (300 baud, 10 bits a
  character). The request arrives at that rate too: the emulator receives a reader's write at
  once, but the request *ends* when its last character would have left the wire. The answer
  begins ``delay`` seconds after that (the spec's 20-600 ms, fixed or uniform in a range,
  drawn from the seed; real seconds, not divided by ``speed``) and each character is
  delivered when its stop bit would have arrived: character ``k`` (from 0) at answer start
  + ``(k + 1)`` character times. Each delivery is scheduled against the answer's start on the
  loop's monotonic clock, so there is no drift; characters already due are written together,
  and with many meters answering at once the writes are grouped (at most every
  ``write_interval`` seconds: default ``min(0.2, 100 us x replies in flight)``), the last
  character always at its exact time. At ``speed=1`` a readout therefore takes the physical
  floor: 5 request characters + the reply at 30 characters a second + the delay.
- TCP lines send 8-bit bytes with the even-parity bit set, as an 8N1 gateway delivers 7E1
  characters; ptys send 7-bit characters (``eight_bit`` chooses).
- Faults (:class:`~kamstrup382.emulator.faults.Faults`) are drawn per readout from a
  :class:`random.Random` per meter seeded with ``seed`` and the meter's index.

Pulse out (module pin 3) is live: :meth:`Emulator.subscribe_pulses` (thread-safe on
:class:`EmulatorThread`) hears each meter's energy pulses at their instants, not only when a
readout advances the model. For each meter that has subscribers (or every meter, with
``live_pulses=True``) one small task asks the model when the next pulse comes
(:meth:`MeterModel.next_pulse_at`), sleeps the clock's real equivalent of that gap and advances
the model, which calls the subscribers with the pulse's exact instant. Meters nobody listens
to cost nothing. A subscriber that raises is reported to the loop's exception handler and
does not stop the line or the other subscribers.

Every readout is logged (:meth:`Emulator.log`): the values, the clean reply, what went on the
wire and the faults applied; :meth:`Emulator.sent` and :meth:`Emulator.sent_values` give the
replies sent (not the silent ones). The entry exists before the first character goes out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import logging
import os
import random
import resource
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, cast

from kamstrup382.clock import Clock, SystemClock
from kamstrup382.emulator.faults import AppliedFault, Faults
from kamstrup382.emulator.load import HouseholdLoad, Load
from kamstrup382.emulator.model import MeterModel, MeterSettings, PulseCallback
from kamstrup382.emulator.pty import CloseWatch, PtyPair, open_pty, park
from kamstrup382.emulator.tariff import TariffSchedule
from kamstrup382.errors import UsageError
from kamstrup382.protocol import REQUEST, BccAlgorithm, MeterValues, strip_parity

__all__ = [
    "CHARACTERS_PER_SECOND",
    "MAX_DELAY",
    "MIN_DELAY",
    "Emulator",
    "EmulatorThread",
    "Readout",
    "Transport",
]

#: 300 baud, 10 bits a character (start, 7 data, parity, stop).
CHARACTERS_PER_SECOND = 30.0
#: The specification's answer window, in seconds after the request.
MIN_DELAY = 0.02
MAX_DELAY = 0.6
#: Longest grouping of due characters into one write when many replies are in flight.
MAX_WRITE_INTERVAL = 0.2
WRITE_INTERVAL_PER_REPLY = 100e-6
#: Longest stretch of answering queued requests before the loop serves the lines again.
ANSWER_BUDGET = 0.005
#: How often pty slaves are checked and parked (see :mod:`.pty`), for up to 20 ptys (more: slower).
PTY_POLL = 0.01
#: How far ahead a pulse task looks for the next pulse (virtual time) before it looks again.
PULSE_HORIZON = timedelta(hours=1)
#: Longest real sleep of a pulse task before it plans again (a load swapped meanwhile).
PULSE_REPLAN = 1.0
#: Shortest real sleep of a pulse task while its clock has not reached the instant (a
#: :class:`~kamstrup382.clock.ManualClock` has no real equivalent: it is polled this often).
PULSE_POLL = 0.001
#: A TCP port range where consecutive free ports are looked for (below Linux's ephemeral ports).
FREE_PORT_RANGE = (20000, 32768)

_log = logging.getLogger(__name__)

Transport = Literal["tcp", "pty"]
Delay = float | tuple[float, float]


@dataclass
class Readout:
    """One request answered (or not) by one meter.

    ``values`` and ``clean`` (the reply in 7-bit form, straight from the protocol encoder)
    are ``None`` / empty for a silent readout. ``wire`` is everything put on the line for it,
    in wire form (8-bit with parity bits on 8-bit lines), noise included; ``written`` how much
    of it has been written so far, ``complete`` whether all of it was, ``ended`` whether the
    line is done with it (complete, or cut short by a reader that hung up). ``delay`` is the
    time from the end of the request on the wire to the start of the answer; ``request_end``
    the loop time when the request ended on the wire.
    """

    number: int
    requested_at: datetime
    request_end: float
    delay: float
    faults: tuple[AppliedFault, ...]
    values: MeterValues | None
    clean: bytes
    wire: bytes
    eight_bit: bool
    written: int = 0
    complete: bool = False
    ended: bool = False

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(f.kind for f in self.faults)

    @property
    def silent(self) -> bool:
        return "silent" in self.kinds

    @property
    def sent(self) -> bytes:
        """What has been sent for this readout so far, in 7-bit form (bit 7 cleared).

        ``written`` counts a character before it is handed to the line, so a reader that has
        received the last character of a reply finds all of it here.
        """
        return strip_parity(self.wire[: self.written])


@dataclass
class _Meter:
    index: int
    model: MeterModel
    rng: random.Random
    port: str = ""
    log: list[Readout] = field(default_factory=list)
    pulse_subscribers: int = 0
    pulse_task: asyncio.Task[None] | None = None


class _Write(Protocol):
    def __call__(self, data: bytes) -> None: ...


class _Session:
    """One line to one meter: request matching, the answer's schedule, the pacing."""

    def __init__(
        self,
        emulator: Emulator,
        meter: _Meter,
        write: _Write,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.emulator = emulator
        self.meter = meter
        self._write = write
        self._on_idle = on_idle
        self._loop = asyncio.get_running_loop()
        self._tail = b""  # the last bytes received, 7-bit, shorter than the request
        self._inbound_free = 0.0  # loop time when the inbound wire is free again
        self._readout: Readout | None = None
        self._start = 0.0  # loop time when the answer's first start bit goes out
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._pending = False  # a request is waiting to be answered

    @property
    def busy(self) -> bool:
        return self._pending or self._readout is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def feed(self, data: bytes) -> None:
        if self._closed or not data:
            return
        ct = self.emulator.character_time
        begin = max(self._loop.time(), self._inbound_free)
        self._inbound_free = begin + len(data) * ct
        if self.busy:
            return  # answering: not listening
        head = len(self._tail)
        text = self._tail + strip_parity(data)
        at = text.find(REQUEST)
        if at < 0:
            self._tail = text[-(len(REQUEST) - 1) :]
            return
        self._tail = b""
        last = at + len(REQUEST) - 1 - head  # index in data of the request's LF
        self._pending = True
        self.emulator.queue_answer(self, begin + (last + 1) * ct)

    def answer(self, request_end: float) -> None:
        """Decide the faults and the delay, take the model's snapshot, schedule the reply."""
        self._pending = False
        emulator, meter = self.emulator, self.meter
        faults = emulator.faults
        kinds = faults.choose(meter.rng) if faults.active else ()
        delay = emulator.draw_delay(meter.rng)
        number = len(meter.log) + 1
        if "silent" in kinds:
            damage = faults.damage(b"", kinds, meter.rng, eight_bit=emulator.eight_bit)
            meter.log.append(
                Readout(
                    number,
                    meter.model.clock.now(),
                    request_end,
                    delay,
                    damage.faults,
                    None,
                    b"",
                    b"",
                    emulator.eight_bit,
                    complete=True,
                    ended=True,
                )
            )
            self._idle()
            return
        snap = meter.model.snapshot(bcc=emulator.bcc)
        damage = faults.damage(snap.telegram, kinds, meter.rng, eight_bit=emulator.eight_bit)
        if damage.late_delay is not None:
            delay = damage.late_delay
        readout = Readout(
            number,
            snap.at,
            request_end,
            delay,
            damage.faults,
            snap.values,
            snap.telegram,
            damage.wire,
            emulator.eight_bit,
        )
        meter.log.append(readout)
        self._readout = readout
        self._start = request_end + delay
        emulator.in_flight += 1
        self._timer = self._loop.call_at(self._start + emulator.character_time, self._pump)

    def _pump(self) -> None:
        self._timer = None
        readout = self._readout
        if readout is None or self._closed:
            return
        emulator = self.emulator
        ct = emulator.character_time
        wire = readout.wire
        size = len(wire)
        now = self._loop.time()
        due = min(size, int((now - self._start) / ct + 1e-6))
        if due > readout.written:
            chunk = wire[readout.written : due]
            readout.written = due
            self._write(chunk)
        if readout.written >= size:
            readout.complete = True
            self._finish()
            return
        when = self._start + (readout.written + 1) * ct
        group = emulator.write_interval()
        if group > 0:
            when = min(max(when, now + group), self._start + size * ct)
        self._timer = self._loop.call_at(when, self._pump)

    def _finish(self) -> None:
        if self._readout is not None:
            self._readout.ended = True
            self._readout = None
            self.emulator.in_flight -= 1
        self._idle()

    def _idle(self) -> None:
        self._tail = b""
        if self._on_idle is not None:
            self._on_idle()

    def close(self) -> None:
        """The line is gone: stop answering (the current reply stays incomplete)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._readout is not None:
            self._readout.ended = True
            self._readout = None
            self.emulator.in_flight -= 1
        self._closed = True


class _TcpLine(asyncio.Protocol):
    def __init__(
        self, emulator: Emulator, meter: _Meter, on_lost: Callable[[], None] | None = None
    ) -> None:
        self.emulator = emulator
        self.meter = meter
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.session: _Session | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.session = _Session(self.emulator, self.meter, self._send)
        self.emulator._connections.add(self)

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
        self.emulator._connections.discard(self)
        if self._on_lost is not None:
            self._on_lost()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _TcpListener:
    """The listening socket of one meter, accepting by hand (no :class:`asyncio.Server`).

    ``exclusive``: one reader at a time, as on a meter's single optical port: the listening
    socket is closed while a reader is connected (a second one is refused) and opened again
    when it leaves. It halves the descriptors needed (the emulator turns it on when the
    open-file limit cannot hold a listening and a connected socket for every meter).
    """

    def __init__(
        self, emulator: Emulator, meter: _Meter, sock: socket.socket, *, exclusive: bool
    ) -> None:
        self.emulator = emulator
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
            self.emulator._spawn(self._serve(conn))
            if self.exclusive:
                return

    async def _serve(self, conn: socket.socket) -> None:
        def factory() -> _TcpLine:
            return _TcpLine(self.emulator, self.meter, self._lost if self.exclusive else None)

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


class _PtyLine:
    """A meter on a pty: reads the master, writes replies into it, keeps the slave openable."""

    def __init__(self, emulator: Emulator, meter: _Meter) -> None:
        self.emulator = emulator
        self.meter = meter
        self.pty: PtyPair = open_pty()
        self.path = self.pty.path
        self.session = _Session(emulator, meter, self._send, on_idle=self.park)
        asyncio.get_running_loop().add_reader(self.pty.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.pty.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no slave open (cannot happen while we hold one)
            return
        self.park()  # the reader has configured the line before writing
        self.session.feed(data)

    def _send(self, data: bytes) -> None:
        # A meter talks whether or not anyone listens: what the pty cannot take is lost.
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            os.write(self.pty.master, data)

    def park(self) -> None:
        with contextlib.suppress(OSError):
            park(self.pty.slave)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.pty.master)
        self.session.close()
        self.pty.close()


def _check_delay(delay: Delay) -> tuple[float, float]:
    lo, hi = delay if isinstance(delay, tuple) else (delay, delay)
    lo, hi = float(lo), float(hi)
    if not (MIN_DELAY <= lo <= hi <= MAX_DELAY):
        shown = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
        raise UsageError(
            f"delay {shown} s outside the spec's answer window "
            f"{MIN_DELAY:g}-{MAX_DELAY:g} s (lo <= hi)"
        )
    return (lo, hi)


def more_files(need: int) -> int:
    """Raise the open-file limit towards ``need`` (soft to hard; hard too where allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    infinite = resource.RLIM_INFINITY
    if hard != infinite and hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
    target = hard if hard != infinite else max(need, soft)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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


def _bind_ports(host: str, port: int, count: int) -> list[socket.socket]:
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
                    f"(limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
                ) from exc
            if exc.errno != errno.EADDRINUSE:
                raise UsageError(f"cannot listen on {host}: {exc.strerror}") from exc
            continue
        return socks
    raise UsageError(f"found no {count} consecutive free TCP ports on {host}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _url(host: str, port: int) -> str:
    return f"socket://[{host}]:{port}" if ":" in host else f"socket://{host}:{port}"


class Emulator:
    """Emulated Kamstrup 382 meters on TCP ports or ptys, as an async context manager.

    ``meters``: how many (each with default settings, customer numbers counting up from the
    settings' one) or the :class:`MeterModel` objects to serve. ``transport``: ``"tcp"`` (one
    port per meter, consecutive from ``port``; 0 = free ones) or ``"pty"``. ``speed`` divides
    the character time (1 = the true 300 baud). ``delay``: seconds from the end of the request
    to the start of the answer, fixed or ``(lo, hi)`` uniform, inside 0.02-0.6.
    ``eight_bit``: 8-bit bytes with even parity (default on TCP) or 7-bit characters (default
    on ptys). ``bcc``: the meter's algorithm (the Kamstrup sum). ``faults``: a
    :class:`Faults` or its text. ``seed``: faults and random delays. ``clock``, ``load``,
    ``settings``, ``tariff_schedule``: for the models built here (ignored for given models);
    ``load`` defaults to a :class:`HouseholdLoad` seeded per meter. ``write_interval``: group
    due characters into writes at most this often (None: automatic, 0: every character).
    ``exclusive``: one reader per TCP meter at a time (its port refuses others meanwhile);
    None: only when the open-file limit cannot hold two sockets per meter. ``live_pulses``:
    deliver every meter's pulses live even to subscribers added on the models directly
    (:meth:`subscribe_pulses` turns it on per meter by itself).

    ``ports`` lists where each meter is (``socket://HOST:PORT`` or the pty slave's path),
    ``models`` the meter models.
    """

    def __init__(
        self,
        meters: int | Sequence[MeterModel] = 1,
        *,
        transport: Transport = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        delay: Delay = 0.05,
        eight_bit: bool | None = None,
        bcc: BccAlgorithm | str = BccAlgorithm.SUM7,
        faults: Faults | str | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        load: Load | None = None,
        settings: MeterSettings | None = None,
        tariff_schedule: TariffSchedule | str | None = None,
        write_interval: float | None = None,
        exclusive: bool | None = None,
        live_pulses: bool = False,
    ) -> None:
        if transport not in ("tcp", "pty"):
            raise UsageError(f"transport must be 'tcp' or 'pty', got {transport!r}")
        if not (isinstance(speed, int | float) and speed > 0):
            raise UsageError(f"speed must be a positive number, got {speed!r}")
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise UsageError(f"port must be 0-65535, got {port!r}")
        if write_interval is not None and not write_interval >= 0:
            raise UsageError(f"write_interval must be >= 0, got {write_interval!r}")
        try:
            self.bcc = BccAlgorithm(bcc)
        except ValueError:
            raise UsageError(f"bcc must be 'sum7' or 'xor', got {bcc!r}") from None
        self.transport: Transport = transport
        self.host = host
        self.port = port
        self.speed = float(speed)
        self.delay = _check_delay(delay)
        self.eight_bit = (transport == "tcp") if eight_bit is None else bool(eight_bit)
        self.faults = Faults.parse(faults) if isinstance(faults, str) else faults or Faults()
        self.seed = seed
        self.character_time = 1.0 / CHARACTERS_PER_SECOND / self.speed
        self._write_interval = write_interval
        self.models = self._models(meters, clock, load, settings, tariff_schedule)
        self._meters = [
            _Meter(i, model, random.Random(f"k382-emulator:{seed}:{i}"))
            for i, model in enumerate(self.models)
        ]
        self.ports: list[str] = []
        self.in_flight = 0
        self.exclusive = exclusive
        self._answers: collections.deque[tuple[_Session, float]] = collections.deque()
        self._answering: asyncio.Handle | None = None
        self._listeners: list[_TcpListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_TcpLine] = set()
        self._ptys: list[_PtyLine] = []
        self._watch: CloseWatch | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._poll_every = PTY_POLL
        self._started = False
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.live_pulses = bool(live_pulses)

    @staticmethod
    def _models(
        meters: int | Sequence[MeterModel],
        clock: Clock | None,
        load: Load | None,
        settings: MeterSettings | None,
        tariff_schedule: TariffSchedule | str | None,
    ) -> list[MeterModel]:
        if isinstance(meters, int) and not isinstance(meters, bool):
            if meters < 1:
                raise UsageError(f"meters must be at least 1, got {meters}")
            base = settings if settings is not None else MeterSettings()
            clock = clock if clock is not None else SystemClock()
            first = int(base.customer_number)
            models = []
            for i in range(meters):
                own = (
                    dataclasses.replace(base, customer_number=f"{(first + i) % 10**8:08d}")
                    if i
                    else base
                )
                models.append(
                    MeterModel(
                        own,
                        load if load is not None else HouseholdLoad(seed=i),
                        clock,
                        tariff_schedule=tariff_schedule,
                    )
                )
            return models
        if isinstance(meters, bool):
            raise UsageError("meters must be a count or a non-empty sequence of MeterModel")
        models = list(meters)
        if not models or not all(isinstance(m, MeterModel) for m in models):
            raise UsageError("meters must be a count or a non-empty sequence of MeterModel")
        return models

    # -- the bookkeeping tests read ----------------------------------------------------------

    def log(self, meter: int) -> list[Readout]:
        """Every readout of meter ``meter`` (0-based), silent ones included."""
        return list(self._meters[meter].log)

    def sent(self, meter: int) -> list[bytes]:
        """Each reply sent by meter ``meter`` (as far as sent), after the faults, in 7-bit form."""
        return [r.sent for r in self._meters[meter].log if not r.silent]

    def sent_values(self, meter: int) -> list[MeterValues]:
        """The register values of each reply in :meth:`sent`."""
        return [r.values for r in self._meters[meter].log if r.values is not None]

    # -- timing -------------------------------------------------------------------------------

    def draw_delay(self, rng: random.Random) -> float:
        lo, hi = self.delay
        return lo if lo == hi else rng.uniform(lo, hi)

    def queue_answer(self, session: _Session, request_end: float) -> None:
        """Answer ``session``'s request soon: in budgeted batches, so that a burst of
        thousands of requests (snapshots, encoding) does not stall the replies in flight."""
        self._answers.append((session, request_end))
        if self._answering is None:
            self._answering = asyncio.get_running_loop().call_soon(self._answer_some)

    def _answer_some(self) -> None:
        self._answering = None
        until = time.perf_counter() + ANSWER_BUDGET
        queue = self._answers
        while queue:
            session, request_end = queue.popleft()
            if not session.closed:
                session.answer(request_end)
            if time.perf_counter() > until:
                break
        if queue:
            self._answering = asyncio.get_running_loop().call_soon(self._answer_some)

    def write_interval(self) -> float:
        if self._write_interval is not None:
            return self._write_interval
        return min(MAX_WRITE_INTERVAL, WRITE_INTERVAL_PER_REPLY * self.in_flight)

    # -- pulse out ----------------------------------------------------------------------------

    def subscribe_pulses(self, meter: int, callback: PulseCallback) -> Callable[[], None]:
        """Call ``callback(count, at)`` for meter ``meter``'s (0-based) pulses on pin 3, live.

        ``count`` pulses were emitted up to ``at``, the exact instant (to the microsecond, on
        the meter's clock) of the last of them; see :meth:`MeterModel.subscribe_pulses`. The
        callback runs in the thread that advanced the model: the emulator's loop for live
        pulses and readouts. Call this in the loop's thread once started (or before start);
        returns the function that unsubscribes (the meter's pulse task stops with its last
        subscriber).
        """
        if isinstance(meter, bool) or not isinstance(meter, int):
            raise UsageError(f"meter must be an index, got {meter!r}")
        if not 0 <= meter < len(self._meters):
            raise UsageError(f"meter {meter} does not exist (0-{len(self._meters) - 1})")
        if self._running and _running_loop() is not self._loop:
            raise UsageError(
                "subscribe_pulses of a running Emulator belongs in its loop's thread "
                "(EmulatorThread.subscribe_pulses works from any thread)"
            )
        entry = self._meters[meter]

        def guarded(count: int, at: datetime) -> None:
            try:
                callback(count, at)
            except Exception:
                _log.exception("pulse subscriber %r of meter %d failed", callback, meter)

        unsubscribe_model = entry.model.subscribe_pulses(guarded)
        entry.pulse_subscribers += 1
        self._follow_pulses(entry)
        done = False

        def unsubscribe() -> None:
            nonlocal done
            if done:
                return
            done = True
            unsubscribe_model()
            entry.pulse_subscribers -= 1
            self._follow_pulses(entry)

        return unsubscribe

    def _follow_pulses(self, meter: _Meter) -> None:
        """Start or stop ``meter``'s pulse task as it has listeners or not."""
        wanted = self._running and (self.live_pulses or meter.pulse_subscribers > 0)
        if wanted and meter.pulse_task is None:
            meter.pulse_task = asyncio.get_running_loop().create_task(
                self._pulse_loop(meter.model), name=f"k382-pulses-{meter.index}"
            )
        elif not wanted and meter.pulse_task is not None:
            meter.pulse_task.cancel()
            meter.pulse_task = None

    @staticmethod
    async def _pulse_loop(model: MeterModel) -> None:
        """Sleep until the next pulse, advance the model (it calls the subscribers); repeat."""
        clock = model.clock
        loop = asyncio.get_running_loop()
        try:
            while True:
                at = model.next_pulse_at(PULSE_HORIZON)
                target = at if at is not None else clock.now() + PULSE_HORIZON
                replan = loop.time() + PULSE_REPLAN
                while (now := clock.now()) < target and (left := replan - loop.time()) > 0:
                    wait = clock.real_seconds(target - now)
                    await asyncio.sleep(min(max(wait, PULSE_POLL), left))
                model.advance()
        except Exception:  # the load failed (a CSV that ends): readouts will say so
            _log.exception("live pulses of %r stopped", model)

    # -- life cycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            raise UsageError("this emulator has already been started")
        self._started = True
        try:
            if self.transport == "tcp":
                await self._start_tcp()
            else:
                self._start_pty()
        except BaseException:
            await self.close()
            raise
        self._running = True
        self._loop = asyncio.get_running_loop()
        for meter in self._meters:
            # the model's reply cache filled now (it is reused while the registers shown stay
            # the same): a burst of requests then costs the snapshot, not the encoding too
            meter.model.snapshot(bcc=self.bcc)
            self._follow_pulses(meter)

    async def _start_tcp(self) -> None:
        count = len(self._meters)
        limit = more_files(2 * count + 256)
        exclusive = self.exclusive
        if exclusive is None:
            exclusive = limit < 2 * count + 64
        if limit < count + 64:
            raise UsageError(
                f"{count} TCP meters need at least {count + 64} open files (limit {limit})"
            )
        socks = _bind_ports(self.host, self.port, count)
        try:
            for meter, sock in zip(self._meters, socks, strict=True):
                listener = _TcpListener(self, meter, sock, exclusive=exclusive)
                self._listeners.append(listener)
                meter.port = _url(self.host, listener.port)
        except BaseException:
            for sock in socks[len(self._listeners) :]:
                sock.close()
            raise
        self.ports = [m.port for m in self._meters]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_pty(self) -> None:
        more_files(3 * len(self._meters) + 256)
        loop = asyncio.get_running_loop()
        self._watch = CloseWatch.create()
        if self._watch is not None:
            loop.add_reader(self._watch.fd, self._closed_slaves)
        for meter in self._meters:
            try:
                line = _PtyLine(self, meter)
            except OSError as exc:
                raise UsageError(f"cannot open a pseudo-terminal: {exc.strerror}") from exc
            self._ptys.append(line)
            meter.port = line.path
            if self._watch is not None:
                self._watch.add(line.path)
        self.ports = [m.port for m in self._meters]
        self._poll_every = PTY_POLL * max(1.0, len(self._ptys) / 20)
        self._poll = loop.call_later(self._poll_every, self._park_all)

    def _closed_slaves(self) -> None:
        assert self._watch is not None
        closed = self._watch.closed()
        for line in self._ptys:
            if line.path in closed:
                line.park()

    def _park_all(self) -> None:
        for line in self._ptys:
            line.park()
        self._poll = asyncio.get_running_loop().call_later(self._poll_every, self._park_all)

    async def close(self) -> None:
        """Stop listening, hang up every line, close the ptys."""
        self._running = False
        pulse_tasks = [m.pulse_task for m in self._meters if m.pulse_task is not None]
        for meter in self._meters:
            self._follow_pulses(meter)
        if pulse_tasks:
            await asyncio.gather(*pulse_tasks, return_exceptions=True)
        if self._answering is not None:
            self._answering.cancel()
            self._answering = None
        self._answers.clear()
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in list(self._connections):
            conn.abort()
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._watch is not None:
            asyncio.get_running_loop().remove_reader(self._watch.fd)
            self._watch.close()
            self._watch = None
        for line in self._ptys:
            line.close()
        self._ptys.clear()
        await asyncio.sleep(0)  # let the aborted transports call connection_lost


class EmulatorThread:
    """An :class:`Emulator` in its own thread and event loop, as a sync context manager.

    Takes the same arguments; ``ports``, ``models``, ``log``, ``sent`` and ``sent_values``
    are available once entered.
    """

    def __init__(self, meters: int | Sequence[MeterModel] = 1, **kwargs: Any) -> None:
        self.emulator = Emulator(meters, **kwargs)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def ports(self) -> list[str]:
        return self.emulator.ports

    @property
    def models(self) -> list[MeterModel]:
        return self.emulator.models

    def log(self, meter: int) -> list[Readout]:
        return self.emulator.log(meter)

    def sent(self, meter: int) -> list[bytes]:
        return self.emulator.sent(meter)

    def sent_values(self, meter: int) -> list[MeterValues]:
        return self.emulator.sent_values(meter)

    def subscribe_pulses(self, meter: int, callback: PulseCallback) -> Callable[[], None]:
        """:meth:`Emulator.subscribe_pulses` from any thread; ``callback`` runs in the
        emulator's thread (or in a thread that reads a model directly). Returns a thread-safe
        unsubscribe."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            return self._unsubscriber(self.emulator.subscribe_pulses(meter, callback))

        async def subscribe() -> Callable[[], None]:
            return self.emulator.subscribe_pulses(meter, callback)

        return self._unsubscriber(asyncio.run_coroutine_threadsafe(subscribe(), loop).result())

    def _unsubscriber(self, unsubscribe: Callable[[], None]) -> Callable[[], None]:
        def threadsafe() -> None:
            loop, thread = self._loop, self._thread
            if (
                loop is None
                or thread is None
                or not thread.is_alive()
                or threading.current_thread() is thread
            ):
                unsubscribe()
                return

            async def run() -> None:
                unsubscribe()

            try:
                future = asyncio.run_coroutine_threadsafe(run(), loop)
            except RuntimeError:  # the loop has ended: nothing runs any more
                unsubscribe()
                return
            future.result()

        return threadsafe

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise UsageError("this emulator thread has already been started")
        self._thread = threading.Thread(target=self._run, name="k382-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() if it failed there
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator:
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        """Stop the emulator and wait for its thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
