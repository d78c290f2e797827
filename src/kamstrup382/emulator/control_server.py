"""The emulator's pin 4 control over TCP: ``k382 emulate --control-listen HOST:PORT``.

Each client sends the commands ``--control`` reads on standard input, one a line
(``[METER] tariff 1|2``, ``[METER] pulse N``), and gets one reply line for each: ``ok: ...`` or
``error: ...``. This is the emulator's side of a module's tariff output (a collector's
``tariff_output = "tcp://HOST:PORT"``). A line over :data:`MAX_LINE` bytes is refused and
the client disconnected; at most :data:`MAX_CLIENTS` clients at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kamstrup382.errors import UsageError

__all__ = ["MAX_CLIENTS", "MAX_LINE", "ControlServer"]

log = logging.getLogger(__name__)

MAX_LINE = 256
MAX_CLIENTS = 16


class ControlServer:
    """Serves ``handle(line) -> reply`` on ``host:port`` (port 0: a free one, see :attr:`url`)."""

    def __init__(self, handle: Callable[[str], str], host: str, port: int) -> None:
        self.handle = handle
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"tcp://{self.host}:{port}"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._client, self.host, self.port, limit=MAX_LINE
            )
        except OSError as exc:
            raise UsageError(
                f"cannot listen for control on {self.host}:{self.port}: {exc}"
            ) from exc

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._clients) >= MAX_CLIENTS:
            writer.write(b"error: too many control clients\n")
            writer.close()
            return
        if task is not None:
            self._clients[task] = writer
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError:
                    writer.write(f"error: a line over {MAX_LINE} bytes\n".encode())
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                text = line.decode("utf-8", "replace").strip()
                if text:
                    writer.write((self.handle(text) + "\n").encode())
                    await writer.drain()
        finally:
            if task is not None:
                self._clients.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients.values()):
            writer.close()  # its handler reads the end and finishes
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
