"""A pseudo-terminal for one emulated meter, kept openable at 300 baud 7E1.

The Linux pty quirk (``NOTES.md``, "Testing without a meter"): the pty forces 8 data bits
and no parity, and a ``tcsetattr`` that asks for 7E1 without changing anything the pty keeps
fails with ``EINVAL``. The first open by a reader at 300 baud 7E1 succeeds because it also
changes the speed; once the slave is at 300 baud, the next open fails. So the emulator
*parks* the slave at another speed (9600 baud) whenever it can: when the reader's bytes
arrive (it has configured the line by then), after each reply, when the slave is closed
(inotify, where available) and on a short poll. A pty carries bytes, not bits: the speed is
only a label, and changing it under an open reader disturbs nothing.

The emulator keeps its own descriptor of the slave open, so the master never sees a hangup
between two readers, and sets the slave raw (no echo, no CR/LF translation) from the start.
Ptys send 7-bit characters (the emulator's ``eight_bit`` default on a pty).

:class:`PtyLines` serves meters on ptys: each master read and written from the event loop,
its slave parked as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import struct
import termios
import tty
from collections.abc import Sequence
from dataclasses import dataclass

from kamstrup382.emulator.line import Answering, LineSession, ServedMeter
from kamstrup382.emulator.open_files import reserve_files
from kamstrup382.errors import UsageError

__all__ = ["PARK_SPEED", "PTY_POLL", "CloseWatch", "PtyLines", "PtyPair", "open_pty", "park"]

#: The speed the slave is parked at between readers (anything but 300 baud).
PARK_SPEED = termios.B9600
#: How often pty slaves are checked and parked, for up to 20 ptys (more: slower).
PTY_POLL = 0.01

_IN_CLOSE_WRITE = 0x00000008
_IN_CLOSE_NOWRITE = 0x00000010
_EVENT = struct.Struct("iIII")


@dataclass(frozen=True, slots=True)
class PtyPair:
    master: int
    slave: int
    path: str

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_pty() -> PtyPair:
    """A new pty: master non-blocking, slave raw and parked; the slave's path to give readers."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        park(slave)
        os.set_blocking(master, False)
        path = os.ttyname(slave)
    except OSError:
        os.close(master)
        os.close(slave)
        raise
    return PtyPair(master, slave, path)


def park(slave: int) -> bool:
    """Set the slave's speed to :data:`PARK_SPEED` if it is not; True if it was changed."""
    attrs = termios.tcgetattr(slave)
    if attrs[4] == PARK_SPEED and attrs[5] == PARK_SPEED:
        return False
    attrs[4] = attrs[5] = PARK_SPEED
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return True


class CloseWatch:
    """inotify on pty slave paths: a readable descriptor that reports closes by a reader.

    ``CloseWatch.create()`` returns ``None`` where inotify is not available (the poll then
    does the parking alone).
    """

    def __init__(self, fd: int, libc: ctypes.CDLL) -> None:
        self.fd = fd
        self._libc = libc
        self._paths: dict[int, str] = {}

    @classmethod
    def create(cls) -> CloseWatch | None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        except (OSError, AttributeError):
            return None
        return cls(fd, libc) if fd >= 0 else None

    def add(self, path: str) -> bool:
        wd = int(
            self._libc.inotify_add_watch(
                self.fd, os.fsencode(path), _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE
            )
        )
        if wd < 0:
            return False
        self._paths[wd] = path
        return True

    def closed(self) -> set[str]:
        """The paths closed since the last call (drains the descriptor)."""
        paths: set[str] = set()
        while True:
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                return paths
            if not data:
                return paths
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, _mask, _cookie, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + size
                if wd in self._paths:
                    paths.add(self._paths[wd])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _PtyLine:
    """A meter on a pty: reads the master, writes replies into it, keeps the slave openable."""

    def __init__(self, answering: Answering, meter: ServedMeter) -> None:
        self.meter = meter
        self.pty: PtyPair = open_pty()
        self.path = self.pty.path
        self.session = LineSession(answering, meter, self._send, on_idle=self.park)
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


class PtyLines:
    """The pty side of an emulator: one pty per meter, parked on close (inotify) and on a poll.

    Built inside the running loop.
    """

    def __init__(self, answering: Answering) -> None:
        self.answering = answering
        self._lines: list[_PtyLine] = []
        self._watch: CloseWatch | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._poll_every = PTY_POLL

    def start(self, meters: Sequence[ServedMeter]) -> None:
        """Open a pty for each meter; sets each meter's ``port`` to the slave's path."""
        reserve_files("pty", len(meters))
        loop = asyncio.get_running_loop()
        self._watch = CloseWatch.create()
        if self._watch is not None:
            loop.add_reader(self._watch.fd, self._closed_slaves)
        for meter in meters:
            try:
                line = _PtyLine(self.answering, meter)
            except OSError as exc:
                raise UsageError(f"cannot open a pseudo-terminal: {exc.strerror}") from exc
            self._lines.append(line)
            meter.port = line.path
            if self._watch is not None:
                self._watch.add(line.path)
        self._poll_every = PTY_POLL * max(1.0, len(self._lines) / 20)
        self._poll = loop.call_later(self._poll_every, self._park_all)

    def _closed_slaves(self) -> None:
        assert self._watch is not None
        closed = self._watch.closed()
        for line in self._lines:
            if line.path in closed:
                line.park()

    def _park_all(self) -> None:
        for line in self._lines:
            line.park()
        self._poll = asyncio.get_running_loop().call_later(self._poll_every, self._park_all)

    def close(self) -> None:
        """Stop parking, close every pty (a reader on a slave sees a hangup)."""
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._watch is not None:
            asyncio.get_running_loop().remove_reader(self._watch.fd)
            self._watch.close()
            self._watch = None
        for line in self._lines:
            line.close()
        self._lines.clear()
