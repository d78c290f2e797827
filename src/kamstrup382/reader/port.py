"""What a port string names, and the line mode it implies.

- a serial device path: ``/dev/ttyUSB0``, ``/dev/serial/by-id/usb-...``, ``COM3``;
- ``socket://host:port``: a TCP gateway (ser2net, an ESP stream server) passing raw bytes;
- ``rfc2217://host:port``: a TCP gateway speaking RFC 2217 (it sets baud rate and parity);
- any other pyserial URL (``loop://``, ``spy://...``): handled by pyserial as is.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from kamstrup382.errors import UsageError

__all__ = ["LineMode", "PortKind", "PortSpec", "check_line", "default_line", "parse_port"]

#: ``host:port`` or ``[v6]:port`` without a scheme: a TCP address given where a URL belongs
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):\d{1,5}")


class LineMode(enum.StrEnum):
    """How the port carries the 300 baud 7E1 characters.

    ``7E1``: the port does parity itself (a serial device set to 7E1; the default for devices).
    ``8N1``: the port delivers 8-bit bytes whose bit 7 is the parity bit (a TCP gateway, an 8N1
    optical head): the reader sets parity on what it sends and checks and strips it on what it
    receives. ``auto`` (the default for ``socket://``): a TCP gateway that either passes the
    parity bit (8N1 on its serial side) or does 7E1 itself and passes 7-bit characters; the
    reply's first ``/`` tells which (``0xAF`` with its parity bit, ``0x2F`` without). The request
    goes out with its parity bits, which a 7E1 gateway drops.
    """

    SEVEN_E_ONE = "7E1"
    EIGHT_N_ONE = "8N1"
    AUTO = "auto"


class PortKind(enum.StrEnum):
    DEVICE = "device"
    SOCKET = "socket"
    RFC2217 = "rfc2217"
    URL = "url"  # another pyserial URL handler


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A parsed port: ``host`` and ``tcp_port`` are set for ``socket://`` and ``rfc2217://``."""

    text: str
    kind: PortKind
    host: str | None = None
    tcp_port: int | None = None


def parse_port(port: str) -> PortSpec:
    """Classify ``port``; :class:`UsageError` naming the problem if it cannot be used."""
    if not isinstance(port, str) or not port.strip():
        raise UsageError(f"port must be a device path or a URL, got {port!r}")
    if "://" not in port:
        if _HOST_PORT.fullmatch(port) and not os.path.exists(port):
            raise UsageError(
                f"port {port!r} is not a device: did you mean socket://{port} (a TCP gateway "
                f"passing raw bytes) or rfc2217://{port}?"
            )
        return PortSpec(port, PortKind.DEVICE)
    try:
        parts = urlsplit(port)
    except ValueError as exc:  # a bracketed host that is no IPv6 address, an unclosed '['
        raise UsageError(f"port {port!r}: bad host ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("socket", "rfc2217"):
        return PortSpec(port, PortKind.URL)
    try:
        tcp_port = parts.port
    except ValueError as exc:
        raise UsageError(f"port {port!r}: bad TCP port ({exc})") from exc
    if not parts.hostname or tcp_port is None:
        raise UsageError(f"port {port!r}: expected {scheme}://HOST:PORT")
    if tcp_port == 0:
        raise UsageError(f"port {port!r}: TCP port 0 out of range 1-65535")
    return PortSpec(port, PortKind(scheme), parts.hostname, tcp_port)


def default_line(port: str | PortSpec) -> LineMode:
    """``auto`` for ``socket://`` (a raw TCP gateway: 8N1 passing the parity bit, or 7E1 done by
    the gateway, told by the reply), 7E1 otherwise."""
    spec = port if isinstance(port, PortSpec) else parse_port(port)
    return LineMode.AUTO if spec.kind is PortKind.SOCKET else LineMode.SEVEN_E_ONE


def check_line(line: LineMode, port: str | PortSpec) -> LineMode:
    """``line`` for ``port``; ``auto`` only where the bytes arrive raw (``socket://``): a
    device or an RFC 2217 gateway must be told 7E1 or 8N1."""
    spec = port if isinstance(port, PortSpec) else parse_port(port)
    if line is LineMode.AUTO and spec.kind is not PortKind.SOCKET:
        raise UsageError(f"line auto is for socket:// ports, not {spec.text!r}: say 7E1 or 8N1")
    return line
