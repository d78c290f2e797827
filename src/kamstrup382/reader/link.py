"""Thin blocking transports for :class:`~kamstrup382.reader.sync.Reader`: bytes in, bytes out.

A link knows nothing of the protocol. It flushes stale input, writes the request, and waits a
given time for whatever bytes arrive, returning them as soon as there are any (never waiting
for more than one chunk: the reader stops at the BCC, not at a silence).

- :class:`FdLink`: a serial device (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``, a pty): pyserial
  opens and configures it, the link reads and writes its file descriptor with ``select``.
- :class:`SocketLink`: ``socket://host:port``, a plain TCP socket. pyserial's own ``socket://``
  handler sleeps 0.3 s in ``close()``; this one closes at once.
- :class:`SerialLink`: any other pyserial URL (``rfc2217://``, ``loop://``...), through pyserial.

Failures of the port or the socket become :class:`~kamstrup382.errors.ConnectionLost`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import termios
import time
from typing import Any, Protocol

import serial

from kamstrup382.errors import ConnectionLost, UsageError
from kamstrup382.reader.port import LineMode, PortKind, PortSpec

__all__ = [
    "FdLink",
    "Link",
    "SerialLink",
    "SocketLink",
    "open_link",
    "open_serial",
    "serial_settings",
]

#: Bytes asked for in one read (a whole reply fits).
CHUNK = 4096
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


def serial_settings(line: LineMode, baudrate: int) -> dict[str, Any]:
    """pyserial settings for the line mode: 7E1 done by the port, or 8N1 (parity by us)."""
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
        "stopbits": serial.STOPBITS_ONE,
    }


def _set_termios(fd: int, line: LineMode, baudrate: int) -> None:
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
    attrs[2] = cflag
    attrs[4] = attrs[5] = speed
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def open_serial(port: str, *, line: LineMode, baudrate: int = 300) -> serial.Serial:
    """Open a serial device (or a pyserial URL) set up for ``line``.

    A Linux pty refuses a 7E1 ``tcsetattr`` that does not also change its speed (see the spec
    notes): if the direct open fails that way, the device is opened at 9600 8N1 and then
    switched to the wanted settings in one call, which changes the speed and so succeeds.
    """
    settings = serial_settings(line, baudrate)
    try:
        return serial.serial_for_url(port, timeout=0, write_timeout=None, **settings)
    except ValueError as exc:  # an unknown URL scheme, settings the port cannot take
        raise UsageError(f"cannot open {port}: {exc}") from exc
    except (serial.SerialException, termios.error, OSError) as exc:
        code = exc.args[0] if isinstance(exc, termios.error) else getattr(exc, "errno", None)
        if code != errno.EINVAL or "://" in port:
            raise ConnectionLost(f"cannot open {port}: {exc}") from exc
        first = exc
    try:
        ser = serial.Serial(port, baudrate=9600, timeout=0)
    except (serial.SerialException, termios.error, OSError) as exc:
        raise ConnectionLost(f"cannot open {port}: {exc}") from exc
    try:
        _set_termios(ser.fileno(), line, baudrate)
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
        os.set_blocking(self.fd, False)

    def flush_input(self) -> None:
        with contextlib.suppress(termios.error):
            termios.tcflush(self.fd, termios.TCIFLUSH)
        for _ in range(MAX_FLUSH_READS):
            try:
                data = os.read(self.fd, CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                raise ConnectionLost(f"{self.name}: read failed: {exc}") from exc
            if not data:  # a tty in non-canonical mode with VMIN = 0: nothing there
                return

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

    def flush_input(self) -> None:
        for _ in range(MAX_FLUSH_READS):
            try:
                data = self.sock.recv(CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                raise ConnectionLost(f"{self.name}: {exc}") from exc
            if not data:
                raise ConnectionLost(f"{self.name}: connection closed by the gateway")

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
    """

    def __init__(self, ser: serial.SerialBase, name: str) -> None:
        self.ser = ser
        self.name = name
        try:
            ser.timeout = POLL
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{name}: {exc}") from exc

    def flush_input(self) -> None:
        try:
            self.ser.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.name}: {exc}") from exc

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
    spec: PortSpec, *, line: LineMode, baudrate: int = 300, connect_timeout: float = 5.0
) -> Link:
    """Open the right link for ``spec`` (blocking)."""
    if spec.kind is PortKind.SOCKET:
        assert spec.host is not None and spec.tcp_port is not None
        return SocketLink(spec.host, spec.tcp_port, connect_timeout=connect_timeout)
    ser = open_serial(spec.text, line=line, baudrate=baudrate)
    if spec.kind is PortKind.DEVICE and isinstance(ser, serial.Serial) and _has_fd(ser):
        return FdLink(ser, spec.text)
    return SerialLink(ser, spec.text)


def _has_fd(ser: serial.SerialBase) -> bool:
    try:
        return isinstance(ser.fileno(), int)
    except (AttributeError, serial.SerialException, OSError):
        return False
