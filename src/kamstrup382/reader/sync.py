"""The blocking reader: one port, readouts on demand.

::

    with Reader("/dev/serial/by-id/usb-FTDI_...") as reader:
        reading = reader.read()

The port stays open between readouts and is reopened after a lost connection. The readout
itself is the sans-IO :class:`~kamstrup382.reader.session.Readout`; this module only moves
bytes and keeps time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import TracebackType

from kamstrup382.errors import ConnectionLost, Kamstrup382Error
from kamstrup382.reader.base import ReaderBase
from kamstrup382.reader.link import Link, open_link
from kamstrup382.reader.options import with_attempts
from kamstrup382.reader.reading import Reading
from kamstrup382.reader.session import Accept, Progress, Readout

__all__ = ["Reader"]


class Reader(ReaderBase[Link]):
    """Read a Kamstrup 382 on a serial device, ``socket://`` or ``rfc2217://`` port (blocking).

    The options are described in :class:`~kamstrup382.reader.base.ReaderBase`.
    """

    def open(self) -> None:
        """Open the port now (otherwise the first :meth:`read` does, inside its retries)."""
        self._ensure_link()

    def close(self) -> None:
        link, self._link = self._link, None
        self._broken = None
        if link is not None:
            link.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_link(self) -> Link:
        if self._link is None:
            opts = self.options
            try:
                self._link = open_link(
                    opts.spec,
                    line=opts.line,
                    baudrate=opts.baudrate,
                    connect_timeout=opts.connect_timeout,
                )
            except OSError as exc:  # anything the link did not translate itself
                raise ConnectionLost(f"cannot open {self.port}: {exc}") from exc
        return self._link

    def read(self, progress: Progress | None = None, *, accept: Accept | None = None) -> Reading:
        """One readout, with retries; raises the last typed error if every attempt fails.

        ``accept(reading)`` is called on each complete reading: an
        :class:`~kamstrup382.errors.ImplausibleError` it raises fails that attempt (retried
        like a BCC error, counted in the attempts). It checks, and keeps nothing: the reader
        may still refuse the reading after it.
        """
        progress = progress or self.progress
        failed = 0
        self.session.begin()
        while True:
            try:
                readout = self._attempt(progress)
                return self.session.conclude(readout, self.port, failed + 1, accept)
            except Kamstrup382Error as error:
                failed += 1
                if isinstance(error, ConnectionLost):
                    self.close()
                delay = self.session.next_delay(error, failed)
                if delay is None:
                    self.session.failed()
                    with_attempts(error, failed)
                    raise
                time.sleep(delay)

    def _attempt(self, progress: Progress | None) -> Readout:
        link = self._ensure_link()
        if self._broken is not None:
            broken, limit = self._broken
            self._broken = None
            self._drain(link, broken, limit)
        link.flush_input()
        readout = self.session.readout()
        link.write(readout.request)
        readout.sent(time.monotonic(), datetime.now(UTC))
        try:
            while True:
                wait = readout.timeout_at - time.monotonic()
                if wait <= 0:
                    raise readout.expired(time.monotonic())
                data = link.read(wait)
                if not data:
                    continue
                done = readout.receive(data, time.monotonic())
                if progress is not None:
                    progress(readout.received, max(readout.expected, readout.received))
                if done:
                    return readout
        except Kamstrup382Error as error:
            if readout.needs_drain(error):
                self._broken = (readout, readout.drain_limit())
            raise

    @staticmethod
    def _drain(link: Link, readout: Readout, limit: float) -> None:
        """Let the rest of a broken reply pass (it must not answer the next request)."""
        while True:
            now = time.monotonic()
            until = min(readout.quiet_at, limit)
            if now >= until:
                return
            try:
                data = link.read(until - now)
            except ConnectionLost:
                return
            if data:
                readout.discard(time.monotonic())
