"""Thin blocking transports for :class:`~kamstrup382.reader.sync.Reader`: bytes in, bytes out.

A link knows nothing of the protocol. It flushes stale input, writes the request, and waits a
given time for whatever bytes arrive, returning them as soon as there are any (never waiting
for more than one chunk: the reader stops at the BCC, not at a silence).

- :class:`FdLink`: a serial device (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``, a pty): pyserial
  opens and configures it, the link reads and writes its file descriptor with ``select``.
- :class:`SocketLink`: ``socket://host:port``, a plain TCP socket. pyserial's own ``socket://``
  handler sleeps 0.3 s in ``close()``; this one closes at once.
- :class:`SerialLink`: any other pyserial URL (``rfc2217://``, ``loop://``...), through pyserial.

Bounded: a flush drops what came before the request, and each link counts the bytes it dropped
(``discarded``) and logs them (:class:`DiscardLog`). pyserial's ``rfc2217://`` client keeps
what its reader thread receives in an unbounded queue (``serial/rfc2217.py``: ``_read_buffer =
Queue.Queue()``, one item per byte), filled whether anyone reads or not: a gateway that never
stops talking would grow it without end. :class:`BoundedRfc2217Serial` gives that client a
queue that keeps at most :data:`KEEP` bytes and drops (and counts) the rest, so an
``rfc2217://`` reader holds at most 4 KiB of unread input, twice the longest reply.

Failures of the port or the socket become :class:`~kamstrup382.errors.ConnectionLost`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import select
import socket
import termios
import time
from typing import Any, Protocol

import serial
import serial.rfc2217

from kamstrup382.errors import ConnectionLost, UsageError
from kamstrup382.reader.port import LineMode, PortKind, PortSpec

__all__ = [
    "KEEP",
    "BoundedRfc2217Serial",
    "DiscardLog",
    "FdLink",
    "Link",
    "SerialLink",
    "SocketLink",
    "open_link",
    "open_serial",
    "serial_settings",
]

log = logging.getLogger(__name__)

#: Bytes asked for in one read (a whole reply fits).
CHUNK = 4096
#: Bytes a link keeps unread at most outside a readout (twice the default longest reply).
KEEP = 4096
#: Seconds between two warnings of one link about dropped bytes, at least.
WARN_INTERVAL = 60.0
#: Seconds a pyserial read waits at most in one step (:class:`SerialLink`).
POLL = 0.01
#: Reads one flush of the input makes at most: a peer that never stops talking cannot hold it
#: (what is left is noise before the reply, which the decoder skips without keeping it).
MAX_FLUSH_READS = 64


class Link(Protocol):
    def flush_input(self) -> None:
        """Discard every byte received so far."""

    def write(self, data: bytes) -> None:
        """Send ``data`` (all of it)."""

    def read(self, timeout: float) -> bytes:
        """The bytes that arrive within ``timeout`` seconds (``b""`` if none), without waiting
        for more once some are there."""

    def close(self) -> None: ...


class DiscardLog:
    """Logs the bytes a link dropped since the last report, with the link's name: at debug
    level, or as a warning when more than :data:`KEEP` (a gateway that talks between
    attempts), at most once per :data:`WARN_INTERVAL` (the count adds up meanwhile)."""

    __slots__ = ("_reported", "_warned_at", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._reported = 0
        self._warned_at: float | None = None

    def report(self, discarded: int, now: float) -> None:
        """``discarded``: the link's total so far; ``now``: a monotonic time."""
        new = discarded - self._reported
        if new <= 0:
            return
        if new <= KEEP:
            log.debug("%s: dropped %d bytes that came outside a readout", self.name, new)
        else:
            if self._warned_at is not None and now - self._warned_at < WARN_INTERVAL:
                return  # said recently: the count adds up until the next warning
            self._warned_at = now
            log.warning(
                "%s: dropped %d bytes that came outside a readout (%d since the link opened): "
                "the gateway or the meter talks between attempts",
                self.name,
                new,
                discarded,
            )
        self._reported = discarded


#: What an open's errno means to someone at the meter, said once (pyserial repeats the path
#: and the errno in its own message)
_OPEN_ERRORS = {
    errno.ENOENT: "no such device (is it plugged in? ls /dev/serial/by-id/)",
    errno.EACCES: "permission denied (is the user in the dialout group?)",
    errno.EBUSY: "in use by another program",
    errno.ENXIO: "no such device or address",
}


def _why(exc: BaseException) -> str:
    """Why an open failed, once."""
    code = getattr(exc, "errno", None)
    return _OPEN_ERRORS.get(code, str(exc)) if isinstance(code, int) else str(exc)


class _BoundedBytes(queue.Queue[bytes | None]):
    """pyserial's RFC 2217 read buffer (one item per byte, ``None`` at the end of the
    connection), keeping at most ``bound`` bytes; ``dropped`` counts the rest."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound
        self.dropped = 0

    def put(self, item: bytes | None, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:  # only pyserial's reader thread puts: the size cannot grow meanwhile
            if item is not None and len(self.queue) >= self.bound:
                self.dropped += len(item)
                return
        super().put(item, block, timeout)

    def clear(self) -> None:
        """Drop what is queued (counted in ``dropped``), keeping an end-of-connection mark."""
        with self.mutex:
            items = list(self.queue)
            self.queue.clear()
            self.dropped += sum(len(item) for item in items if item is not None)
            if None in items:
                self.queue.append(None)


class BoundedRfc2217Serial(serial.rfc2217.Serial):  # type: ignore[misc]
    """pyserial's RFC 2217 client with a bounded read buffer (:data:`KEEP` bytes).

    pyserial creates the buffer in ``open()`` just before it starts its reader thread; the
    property below hands it a :class:`_BoundedBytes` instead, so that no byte ever goes to an
    unbounded queue. ``discarded``: the bytes dropped (over the bound, or by a flush).
    """

    @property
    def _read_buffer(self) -> _BoundedBytes | None:
        return self.__dict__.get("_bounded_buffer")

    @_read_buffer.setter
    def _read_buffer(self, value: object) -> None:
        self.__dict__["_bounded_buffer"] = None if value is None else _BoundedBytes(KEEP)

    @property
    def discarded(self) -> int:
        buffer = self._read_buffer
        return 0 if buffer is None else buffer.dropped

    def reset_input_buffer(self) -> None:
        """Purge the gateway's buffer and drop ours at once (pyserial's own empties its
        queue item by item while its thread may keep adding)."""
        if not self.is_open:
            raise serial.PortNotOpenError()
        self.rfc2217_send_purge(serial.rfc2217.PURGE_RECEIVE_BUFFER)
        buffer = self._read_buffer
        if buffer is not None:
            buffer.clear()


def serial_settings(line: LineMode, baudrate: int, stop_bits: int = 1) -> dict[str, Any]:
    """pyserial settings for the line mode: 7E1 done by the port, or 8N1 (parity by us);
    ``stop_bits=2`` for KMP's 8N2 (MULTICAL)."""
    if line is LineMode.SEVEN_E_ONE:
        return {
            "baudrate": baudrate,
            "bytesize": serial.SEVENBITS,
            "parity": serial.PARITY_EVEN,
            "stopbits": serial.STOPBITS_ONE,
        }
    return {
        "baudrate": baudrate,
        "bytesize": serial.EIGHTBITS,
        "parity": serial.PARITY_NONE,
        "stopbits": serial.STOPBITS_TWO if stop_bits == 2 else serial.STOPBITS_ONE,
    }


def _set_termios(fd: int, line: LineMode, baudrate: int, stop_bits: int = 1) -> None:
    """Speed, character size and parity in one ``tcsetattr`` call."""
    speed = getattr(termios, f"B{baudrate}", None)
    if speed is None:
        raise UsageError(f"baud rate {baudrate} is not a standard termios speed")
    attrs = termios.tcgetattr(fd)
    cflag = attrs[2] & ~(termios.CSIZE | termios.PARENB | termios.PARODD | termios.CSTOPB)
    if line is LineMode.SEVEN_E_ONE:
        cflag |= termios.CS7 | termios.PARENB
    else:
        cflag |= termios.CS8
        if stop_bits == 2:
            cflag |= termios.CSTOPB
    attrs[2] = cflag
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def open_serial(
    port: str, *, line: LineMode, baudrate: int = 300, stop_bits: int = 1
) -> serial.Serial:
    """Open a serial device (or a pyserial URL) set up for ``line``.

    A Linux pty refuses a 7E1 ``tcsetattr`` that does not also change its speed (see the spec
    notes): if the direct open fails that way, the device is opened at 9600 8N1 and then
    switched to the wanted settings in one call, which changes the speed and so succeeds.
    """
    settings = serial_settings(line, baudrate, stop_bits)
    try:
        if port.lower().startswith("rfc2217://"):
            return BoundedRfc2217Serial(port, timeout=0, write_timeout=None, **settings)
        return serial.serial_for_url(port, timeout=0, write_timeout=None, **settings)
    except ValueError as exc:  # an unknown URL scheme, settings the port cannot take
        raise UsageError(f"cannot open {port}: {exc}") from exc
    except (serial.SerialException, termios.error, OSError) as exc:
        code = exc.args[0] if isinstance(exc, termios.error) else getattr(exc, "errno", None)
        if code != errno.EINVAL or "://" in port:
            raise ConnectionLost(f"cannot open {port}: {_why(exc)}") from exc
        first = exc
    try:
        ser = serial.Serial(port, baudrate=9600, timeout=0)
    except (serial.SerialException, termios.error, OSError) as exc:
        raise ConnectionLost(f"cannot open {port}: {_why(exc)}") from exc
    try:
        _set_termios(ser.fileno(), line, baudrate, stop_bits)
    except termios.error as exc:
        ser.close()
        raise ConnectionLost(f"cannot set {port} to {baudrate} {line.value}: {exc}") from first
    return ser


class FdLink:
    """A serial device's file descriptor, read with ``select`` (pyserial opened it)."""

    def __init__(self, ser: serial.Serial, name: str) -> None:
        self.ser = ser
        self.name = name
        self.fd: int = ser.fileno()
        self.discarded = 0  # bytes dropped by flushes
        self._discards = DiscardLog(name)
        os.set_blocking(self.fd, False)

    def flush_input(self) -> None:
        with contextlib.suppress(termios.error):
            termios.tcflush(self.fd, termios.TCIFLUSH)
        try:
            for _ in range(MAX_FLUSH_READS):
                try:
                    data = os.read(self.fd, CHUNK)
                except BlockingIOError:
                    return
                except OSError as exc:
                    raise ConnectionLost(f"{self.name}: read failed: {exc}") from exc
                if not data:  # a tty in non-canonical mode with VMIN = 0: nothing there
                    return
                self.discarded += len(data)
        finally:
            self._discards.report(self.discarded, time.monotonic())

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)
                continue
            except OSError as exc:
                raise ConnectionLost(f"{self.name}: write failed: {exc}") from exc
            view = view[written:]

    def read(self, timeout: float) -> bytes:
        try:
            ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
            if not ready:
                return b""
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise ConnectionLost(f"{self.name}: read failed: {exc}") from exc
        if not data:
            raise ConnectionLost(f"{self.name}: device disconnected")
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ser.close()


class SocketLink:
    """A TCP connection to a raw gateway (``socket://host:port``)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float) -> None:
        self.name = f"{host}:{port}"
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {self.name}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.discarded = 0  # bytes dropped by flushes
        self._discards = DiscardLog(self.name)

    def flush_input(self) -> None:
        try:
            for _ in range(MAX_FLUSH_READS):
                try:
                    data = self.sock.recv(CHUNK)
                except BlockingIOError:
                    return
                except OSError as exc:
                    raise ConnectionLost(f"{self.name}: {exc}") from exc
                if not data:
                    raise ConnectionLost(f"{self.name}: connection closed by the gateway")
                self.discarded += len(data)
        finally:
            self._discards.report(self.discarded, time.monotonic())

    def write(self, data: bytes) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionLost(f"{self.name}: send failed: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                self.sock.setblocking(False)

    def read(self, timeout: float) -> bytes:
        try:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
            if not ready:
                return b""
            data = self.sock.recv(CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise ConnectionLost(f"{self.name}: {exc}") from exc
        if not data:
            raise ConnectionLost(f"{self.name}: connection closed by the gateway")
        return data

    def close(self) -> None:
        self.sock.close()


class SerialLink:
    """Any pyserial port, through pyserial's own API (``rfc2217://`` and other URLs).

    The port's read timeout is set once to :data:`POLL` (setting it reconfigures the port:
    with RFC 2217 that is a round trip to the gateway); a read waits in steps of it.
    ``discarded``: bytes dropped by flushes and, for ``rfc2217://``, over the client's bound.
    """

    def __init__(self, ser: serial.SerialBase, name: str) -> None:
        self.ser = ser
        self.name = name
        self._flushed = 0
        self._discards = DiscardLog(name)
        try:
            ser.timeout = POLL
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{name}: {exc}") from exc

    @property
    def discarded(self) -> int:
        if isinstance(self.ser, BoundedRfc2217Serial):
            return int(self.ser.discarded)
        return self._flushed

    def flush_input(self) -> None:
        try:
            if not isinstance(self.ser, BoundedRfc2217Serial):
                self._flushed += int(self.ser.in_waiting)
            self.ser.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: {exc}") from exc
        self._discards.report(self.discarded, time.monotonic())

    def write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: write failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        end = time.monotonic() + max(timeout, 0.0)
        try:
            while True:
                data: bytes = self.ser.read(max(self.ser.in_waiting, 1))
                if data or time.monotonic() >= end:
                    return data
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: read failed: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ser.close()


def open_link(
    spec: PortSpec,
    *,
    line: LineMode,
    baudrate: int = 300,
    connect_timeout: float = 5.0,
    stop_bits: int = 1,
) -> Link:
    """Open the right link for ``spec`` (blocking); ``stop_bits`` 2 for an 8N2 line."""
    if spec.kind is PortKind.SOCKET:
        assert spec.host is not None and spec.tcp_port is not None
        return SocketLink(spec.host, spec.tcp_port, connect_timeout=connect_timeout)
    ser = open_serial(spec.text, line=line, baudrate=baudrate, stop_bits=stop_bits)
    if spec.kind is PortKind.DEVICE and isinstance(ser, serial.Serial) and _has_fd(ser):
        return FdLink(ser, spec.text)
    return SerialLink(ser, spec.text)


def _has_fd(ser: serial.SerialBase) -> bool:
    try:
        return isinstance(ser.fileno(), int)
    except (AttributeError, serial.SerialException, OSError):
        return False
