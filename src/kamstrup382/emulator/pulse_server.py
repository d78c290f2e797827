"""Pulse out over TCP: each emulated meter's pin 3 served to every client of its own port.

``k382 emulate --pulse-listen HOST:PORT`` serves meter *n*'s pulses on ``PORT + n - 1`` (port 0:
a free port each), as the JSON lines ``--pulse-out`` writes, one per pulse event::

    {"meter": 1, "count": 1, "at": "2026-03-01T12:00:00.123456Z", "total": 7}

(``count`` pulses up to ``at``, the instant of the last of them on the meter's clock; ``total``
the meter's pulses since the emulator started, so that a client that reconnects can tell what
it missed). A collector reads them with ``pulses = "tcp://HOST:PORT"``; a module maker watches a
bench meter with ``k382 pulses tcp://HOST:PORT``. Clients only listen: what they send is
discarded. A client that does not keep up (more than :data:`MAX_BUFFERED` bytes waiting) is
disconnected, so that no client can make the emulator hold more than that for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from kamstrup382.emulator.model import PulseCallback
from kamstrup382.errors import UsageError

__all__ = ["MAX_BUFFERED", "PulseServer", "pulse_line"]

log = logging.getLogger(__name__)

#: Bytes a slow client may have waiting before it is disconnected (some thousand pulses).
MAX_BUFFERED = 256 * 1024

Subscribe = Callable[[int, PulseCallback], Callable[[], None]]


def pulse_line(meter: int, count: int, at: datetime, total: int) -> str:
    """One pulse event as a JSON line (with its newline); ``meter`` numbered from 1."""
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps({"meter": meter, "count": count, "at": stamp, "total": total}) + "\n"


class _Listener(asyncio.Protocol):
    def __init__(self, clients: set[asyncio.Transport]) -> None:
        self.clients = clients
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one
        self.transport = cast("asyncio.Transport", transport)
        self.clients.add(self.transport)

    def data_received(self, data: bytes) -> None:
        pass  # clients only listen

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.clients.discard(self.transport)


def _factory(clients: set[asyncio.Transport]) -> Callable[[], _Listener]:
    return lambda: _Listener(clients)


class PulseServer:
    """Serves ``meters`` meters' pulses; ``subscribe(meter, callback)`` hears a meter's pulses
    (0-based; :meth:`~kamstrup382.emulator.Emulator.subscribe_pulses`)."""

    def __init__(self, subscribe: Subscribe, meters: int, host: str, port: int) -> None:
        if not 0 <= port <= 65535 or (port and port + meters - 1 > 65535):
            raise UsageError(f"pulse ports {port}-{port + meters - 1} out of range 1-65535")
        self._subscribe = subscribe
        self.meters = meters
        self.host = host
        self.port = port
        self._servers: list[asyncio.Server] = []
        self._clients: list[set[asyncio.Transport]] = [set() for _ in range(meters)]
        self._unsubscribe: list[Callable[[], None]] = []
        self.dropped = 0  # clients disconnected for not keeping up

    @property
    def ports(self) -> list[str]:
        """Where each meter's pulses are served: ``tcp://HOST:PORT``."""
        return [
            f"tcp://{self.host}:{server.sockets[0].getsockname()[1]}" for server in self._servers
        ]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for meter in range(self.meters):
                clients = self._clients[meter]
                port = self.port + meter if self.port else 0
                server = await loop.create_server(_factory(clients), self.host, port)
                self._servers.append(server)
                self._unsubscribe.append(self._subscribe(meter, self._sender(meter)))
        except OSError as exc:
            await self.close()
            raise UsageError(f"cannot listen for pulses on {self.host}:{port}: {exc}") from exc

    def _sender(self, meter: int) -> PulseCallback:
        clients = self._clients[meter]
        total = 0

        def send(count: int, at: datetime) -> None:
            nonlocal total
            total += count
            if not clients:
                return
            data = pulse_line(meter + 1, count, at, total).encode()
            for transport in list(clients):
                if transport.get_write_buffer_size() > MAX_BUFFERED:
                    self.dropped += 1
                    log.warning(
                        "pulses of meter %d: a client that does not read dropped", meter + 1
                    )
                    clients.discard(transport)
                    transport.abort()
                else:
                    transport.write(data)

        return send

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for clients in self._clients:
            for transport in list(clients):
                transport.close()
            clients.clear()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()
