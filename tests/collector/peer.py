"""A scripted meter on loopback TCP, for the collector tests the emulator cannot serve.

Where a meter misbehaves in a way the emulator's faults (:mod:`kamstrup382.emulator.faults`)
play, request by request with their script, the tests use the emulator: no answer, a wrong
check character, an XOR meter (:class:`tests.fixtures.emulator.ExampleMeter` serves the
specification's example with them). The emulator logs readouts, not connections, and damages
its replies at random places, so this peer stays for what it cannot do:

- a damaged reply whose check character is the *other* algorithm's (``"xor_damaged"``: the
  1 in 128 case an ``auto`` reader without a hint takes for a SUM7 meter), where the
  emulator's ``bcc`` fault is neither algorithm, in a sequence with ``"xor"`` replies;
- a reply held until the test lets it go (``"gated"``), to move a clock while a readout runs;
- a reply the test made (bytes: :func:`reply_with` prints registers as the test says, with the
  Kamstrup check character of the result), e.g. the damage the block check cannot see;
- the connections themselves: each connect and request as an event, in order, at the moment
  it happens (:attr:`ScriptedMeter.on_event`); the connections open now; closing them from
  the meter's side (:meth:`ScriptedMeter.drop`).

Each request (``/?!`` CR LF) is answered by the next action of the script: ``"answer"`` (the
specification's example reply, with the parity bit as an 8N1 gateway delivers it), ``"xor"``
(the example's data with an IEC 62056-21 XOR check character), ``"xor_damaged"`` (that reply
with one digit changed in transit, whose check character happens to be the Kamstrup SUM7 of
the damaged block), ``"gated"`` (the example reply once the test sets
:attr:`ScriptedMeter.gate`), or bytes (that reply, 7-bit). When the script is used up, the
last action repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from kamstrup382.protocol import add_parity, bcc_sum7, bcc_xor

EXAMPLE = (Path(__file__).parent.parent / "data" / "spec-example.bin").read_bytes()
_STX, _ETX = EXAMPLE.index(b"\x02"), EXAMPLE.index(b"\x03")
#: The example's data block (after STX, through ETX) with an XOR check character.
XOR_REPLY = EXAMPLE[:-1] + bytes([bcc_xor(EXAMPLE[_STX + 1 : _ETX + 1])])
#: The energy register 0000053 read as 0000058, with the SUM7 check character of that block.
_DAMAGED_BLOCK = EXAMPLE[_STX + 1 : _ETX + 1].replace(b"(0000053*kWh)", b"(0000058*kWh)")
XOR_DAMAGED = EXAMPLE[: _STX + 1] + _DAMAGED_BLOCK + bytes([bcc_sum7(_DAMAGED_BLOCK)])
assert bcc_sum7(_DAMAGED_BLOCK) != bcc_xor(_DAMAGED_BLOCK)  # passes as SUM7 only
assert bcc_sum7(EXAMPLE[_STX + 1 : _ETX + 1]) != XOR_REPLY[-1]  # a true XOR meter


def reply_with(registers: dict[str, str], *, without: tuple[str, ...] = ()) -> bytes:
    """The example reply with each register ``code`` printed as ``registers[code]`` (the text
    between the parentheses: ``{"1.31": "0000428*h"}``) and the registers ``without`` left
    out (not the last, which carries the block's ``!``), closed by the SUM7 of the block
    made."""
    lines = EXAMPLE[_STX + 1 : _ETX].split(b"\r\n")
    made = []
    for line in lines:
        code, _, rest = line.partition(b"(")
        name = code.decode("ascii")
        if name in without:
            continue
        if name in registers:
            end = b")!" if rest.endswith(b")!") else b")"
            made.append(code + b"(" + registers[name].encode("ascii") + end)
        else:
            made.append(line)
    block = b"\r\n".join(made) + b"\x03"
    return EXAMPLE[: _STX + 1] + block + bytes([bcc_sum7(block)])


class ScriptedMeter:
    def __init__(self, *script: str | bytes) -> None:
        self.script = list(script) or ["answer"]
        self.requests = 0
        #: Called with ``"connect"`` on each accepted connection and ``"request"`` on each
        #: request, in the order they happen.
        self.on_event: Callable[[str], None] = lambda event: None
        #: The same events, kept.
        self.events: list[str] = []
        self.port = ""
        #: Set by the test to let a ``"gated"`` reply go.
        self.gate = asyncio.Event()
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

    @property
    def connected(self) -> int:
        """Connections open now."""
        return len(self._writers)

    def drop(self) -> None:
        """Close every connection from this side (a gateway's idle timeout, say)."""
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.events.append("connect")
        self.on_event("connect")
        try:
            while True:
                line = await reader.readuntil(b"\n")
                if bytes(b & 0x7F for b in line).rstrip(b"\r\n") != b"/?!":
                    continue
                self.events.append("request")
                self.on_event("request")
                action = self.script[min(self.requests, len(self.script) - 1)]
                self.requests += 1
                reply = action if isinstance(action, bytes) else EXAMPLE
                if action == "xor":
                    reply = XOR_REPLY
                elif action == "xor_damaged":
                    reply = XOR_DAMAGED
                elif action == "gated":
                    await self.gate.wait()
                await asyncio.sleep(0.02)
                writer.write(add_parity(reply))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
