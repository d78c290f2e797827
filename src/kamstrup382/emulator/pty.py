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
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import struct
import termios
import tty
from dataclasses import dataclass

__all__ = ["PARK_SPEED", "CloseWatch", "PtyPair", "open_pty", "park"]

#: The speed the slave is parked at between readers (anything but 300 baud).
PARK_SPEED = termios.B9600

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
