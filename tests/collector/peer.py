"""A scripted meter on loopback TCP for tests that need a precise sequence of misbehaviour.

Each request (``/?!`` CR LF) is answered by the next action of the script: ``"answer"`` (the
specification's example reply, with the parity bit as an 8N1 gateway delivers it),
``"silent"`` (nothing), ``"bad_bcc"`` (the reply with a wrong block check character). When the
script is used up, the last action repeats.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType

from kamstrup382.protocol import add_parity

EXAMPLE = (Path(__file__).parent.parent / "data" / "spec-example.bin").read_bytes()


class ScriptedMeter:
    def __init__(self, *script: str) -> None:
        self.script = list(script) or ["answer"]
        self.requests = 0
        self.port = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> ScriptedMeter:
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
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readuntil(b"\n")
                if bytes(b & 0x7F for b in line).rstrip(b"\r\n") != b"/?!":
                    continue
                action = self.script[min(self.requests, len(self.script) - 1)]
                self.requests += 1
                reply = EXAMPLE
                if action == "silent":
                    continue
                if action == "bad_bcc":
                    reply = EXAMPLE[:-1] + bytes([(EXAMPLE[-1] + 1) & 0x7F])
                await asyncio.sleep(0.02)
                writer.write(add_parity(reply))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
