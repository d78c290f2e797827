"""One KMP line to one emulated meter: requests in, replies out at the true baud rate.

A :class:`KmpLineSession` is fed the bytes a reader writes and answers through the ``write``
function it is given (a TCP transport: :mod:`.kmp_server`). What the line does, as the meter:

- It finds each request frame (``0x80`` .. ``0x0D``) with the protocol core's decoder, checks
  it (stuffing, CRC: a damaged request is ignored, as the meter ignores it) and answers
  GetType, GetSerialNo and GetRegister from its :class:`~.kmp_meter.KmpMeter`; another
  command is left unanswered. While it answers it does not listen (half duplex).
- Timing is the wire's: a character takes ``bits / baud`` seconds (10 bits for 8N1, 11 for
  8N2). The request ends when its last character would have left the wire (its first byte's
  arrival + its length in character times); the answer begins ``delay`` seconds later and
  character ``k`` (from 0) is written when its stop bit would arrive: answer start +
  ``(k + 1)`` character times, the due characters written together, each wake-up scheduled
  on the loop's monotonic clock (no drift).
- Faults (:class:`~.kmp_faults.KmpFaults`) are drawn per request from the meter's own
  :class:`random.Random` and applied to the clean reply.

Every request answered (or left unanswered) is logged as a :class:`KmpExchange`: the
request, the registers' true values, what went out, the faults.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_meter import KmpMeter
from kamstrup382.errors import ProtocolError, UsageError
from kamstrup382.protocol.kmp import (
    Direction,
    Frame,
    FrameDecoder,
    decode_message,
    encode_frame,
)

__all__ = ["DEFAULT_KMP_DELAY", "KmpExchange", "KmpLineRules", "KmpLineSession"]

#: The emulated meter's answer time, seconds after the request's last character.
DEFAULT_KMP_DELAY = 0.05


@dataclass(slots=True)
class KmpExchange:
    """One request and what the line did with it (the ground truth)."""

    request: bytes
    cid: int | None
    values: dict[str, Decimal] | None
    sent: bytes = b""
    faults: tuple[str, ...] = ()
    request_end: float = 0.0
    answer_start: float | None = None
    done_at: float | None = None
    complete: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class KmpLineRules:
    """The line's timing: baud rate, bits per character, answer delay; the faults."""

    baud: int = 9600
    bits_per_character: int = 10
    delay: float | tuple[float, float] = DEFAULT_KMP_DELAY
    faults: KmpFaults = field(default_factory=KmpFaults)

    def __post_init__(self) -> None:
        if self.baud <= 0 or self.bits_per_character not in (10, 11):
            raise UsageError(
                f"baud {self.baud} must be positive, bits per character 10 (8N1) or 11 (8N2)"
            )
        lo, hi = self.delay if isinstance(self.delay, tuple) else (self.delay, self.delay)
        if not 0.0 <= lo <= hi <= 60.0:
            raise UsageError(f"answer delay {self.delay} s outside 0-60 s (or LO above HI)")

    def draw_delay(self, rng: random.Random) -> float:
        """The answer delay of one request: fixed, or uniform in the range."""
        if isinstance(self.delay, tuple):
            return rng.uniform(*self.delay)
        return self.delay

    @property
    def character_time(self) -> float:
        return self.bits_per_character / self.baud


class KmpLineSession:
    """A line between one reader and one :class:`KmpMeter`; see the module docstring."""

    def __init__(
        self,
        meter: KmpMeter,
        rules: KmpLineRules,
        rng: random.Random,
        write: Callable[[bytes], None],
        log: list[KmpExchange],
    ) -> None:
        self.meter = meter
        self.rules = rules
        self.rng = rng
        self._write = write
        self.log = log
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder(Direction.REQUEST)
        self._first_at: float | None = None
        self._busy = False
        self._closed = False
        self._handle: asyncio.TimerHandle | None = None
        self._pending = b""
        self._pending_start = 0.0
        self._exchange: KmpExchange | None = None

    def feed(self, data: bytes) -> None:
        """Bytes from the reader (ignored while the line answers)."""
        now = self._loop.time()
        while data and not self._busy and not self._closed:
            was_in_frame = self._decoder.in_frame
            try:
                event = self._decoder.feed(data)
            except ProtocolError:
                self._restart()
                return
            if not was_in_frame and self._decoder.in_frame:
                self._first_at = now
            if event is None:
                return
            data = self._decoder.rest
            wire_length = self._decoder.received - self._decoder.skipped - len(data)
            first_at = self._first_at if self._first_at is not None else now
            self._restart()
            if isinstance(event, Frame):
                request_end = max(now, first_at + wire_length * self.rules.character_time)
                self._request(event, request_end, wire_length)

    def _restart(self) -> None:
        self._decoder = FrameDecoder(Direction.REQUEST)
        self._first_at = None

    def _request(self, frame: Frame, request_end: float, wire_length: int) -> None:
        request_wire = encode_frame(frame)
        try:
            message = decode_message(frame)
        except ProtocolError as exc:
            self.log.append(
                KmpExchange(
                    request_wire, frame.cid, None, request_end=request_end, notes=[str(exc)]
                )
            )
            return
        reply, values = self.meter.answer(message)
        exchange = KmpExchange(request_wire, frame.cid, values, request_end=request_end)
        self.log.append(exchange)
        if reply is None:
            exchange.notes.append("no answer to this command")
            return
        kinds = self.rules.faults.choose(self.rng, len(self.log) - 1)
        damage = self.rules.faults.apply(kinds, request_wire, reply.frame(), self.rng)
        exchange.faults = damage.kinds
        if damage.silent:
            return
        if damage.echo:
            self._write(damage.echo)
            exchange.sent += damage.echo
        delay = (
            damage.late_delay if damage.late_delay is not None else self.rules.draw_delay(self.rng)
        )
        self._busy = True
        self._exchange = exchange
        self._pending = damage.reply
        self._pending_start = request_end + delay
        exchange.answer_start = self._pending_start
        self._schedule(self._pending_start + self.rules.character_time)

    def _schedule(self, at: float) -> None:
        self._handle = self._loop.call_at(at, self._pump)

    def _pump(self) -> None:
        self._handle = None
        exchange = self._exchange
        if self._closed or exchange is None:
            return
        ct = self.rules.character_time
        sent = len(exchange.sent) - (len(exchange.request) if "echo" in exchange.faults else 0)
        due = min(len(self._pending), int((self._loop.time() - self._pending_start) / ct + 1e-9))
        if due > sent:
            chunk = self._pending[sent:due]
            self._write(chunk)
            exchange.sent += chunk
            sent = due
        if sent >= len(self._pending):
            exchange.complete = True
            exchange.done_at = self._loop.time()
            self._busy = False
            self._exchange = None
            return
        self._schedule(self._pending_start + (sent + 1) * ct)

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
