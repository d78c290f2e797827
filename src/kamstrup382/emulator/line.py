"""One line to one meter, whatever carries it: the request, the answer's schedule, the pacing.

A :class:`LineSession` is fed the bytes a reader writes and answers through a ``write``
function it is given (a TCP transport, a pty master); :mod:`.tcp` and :mod:`.pty` own those.
What a line does, as the meter does it:

- It answers only a complete request ``/?!`` CR LF (bit 7 of each received byte, the parity
  bit of an 8-bit line, is ignored) and ignores everything else, noise before the request
  included. While it answers it does not listen (mode A is half duplex); afterwards a reader
  may send the request again.
- Timing is the wire's. A character takes ``1 / 30 / speed`` seconds (300 baud, 10 bits a
  character). The request arrives at that rate too: the emulator receives a reader's write at
  once, but the request *ends* when its last character would have left the wire. The answer
  begins ``delay`` seconds after that (the spec's 20-600 ms, fixed or uniform in a range,
  drawn from the seed; real seconds, not divided by ``speed``) and each character is
  delivered when its stop bit would have arrived: character ``k`` (from 0) at answer start
  + ``(k + 1)`` character times. Each delivery is scheduled against the answer's start on the
  loop's monotonic clock, so there is no drift; characters already due are written together,
  and with many meters answering at once the writes are grouped (at most every
  ``write_interval`` seconds: by default :data:`WRITE_INTERVAL_PER_REPLY` per reply in flight,
  at most :data:`MAX_WRITE_INTERVAL`), the last character always at its exact time. At
  ``speed=1`` a readout therefore takes the physical floor: 5 request characters + the reply
  at 30 characters a second + the delay.
- Faults (:class:`~kamstrup382.emulator.faults.Faults`) are taken from the script or drawn
  per request from the meter's own :class:`random.Random`, then applied to the clean reply.

Every request answered (or left unanswered) is logged as an :class:`Exchange` in its meter's
log; the entry exists before the first character goes out. When the line is done with it
(answered completely, cut short by a reader that hung up, or silent) the meter's ``on_ended``
is called with it: the ground truth of what the meter held and what went out
(:meth:`Exchange.record`, one JSON object).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from kamstrup382.emulator.faults import AppliedFault, Faults
from kamstrup382.emulator.model import MeterModel
from kamstrup382.errors import UsageError
from kamstrup382.protocol import REQUEST, BccAlgorithm, MeterValues, strip_parity

__all__ = [
    "CHARACTERS_PER_SECOND",
    "MAX_DELAY",
    "MIN_DELAY",
    "Answering",
    "Delay",
    "Exchange",
    "LineRules",
    "LineSession",
    "ServedMeter",
    "check_delay",
]

#: 300 baud, 10 bits a character (start, 7 data, parity, stop).
CHARACTERS_PER_SECOND = 30.0
#: The specification's answer window, in seconds after the request.
MIN_DELAY = 0.02
MAX_DELAY = 0.6
#: Longest grouping of due characters into one write when many replies are in flight.
MAX_WRITE_INTERVAL = 0.2
WRITE_INTERVAL_PER_REPLY = 100e-6
#: Longest stretch of answering queued requests before the loop serves the lines again.
ANSWER_BUDGET = 0.005

Delay = float | tuple[float, float]


def check_delay(delay: Delay) -> tuple[float, float]:
    """``delay`` as ``(lo, hi)`` seconds, inside the specification's answer window."""
    lo, hi = delay if isinstance(delay, tuple) else (delay, delay)
    lo, hi = float(lo), float(hi)
    if not (MIN_DELAY <= lo <= hi <= MAX_DELAY):
        shown = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
        raise UsageError(
            f"delay {shown} s outside the spec's answer window "
            f"{MIN_DELAY:g}-{MAX_DELAY:g} s (lo <= hi)"
        )
    return (lo, hi)


@dataclass
class Exchange:
    """One request to one meter and what the meter did about it (answered or stayed silent).

    ``values`` and ``clean`` (the reply in 7-bit form, straight from the protocol encoder)
    are ``None`` / empty for a silent exchange. ``wire`` is everything put on the line for it,
    in wire form (8-bit with parity bits on 8-bit lines), noise included; ``written`` how much
    of it has been written so far, ``complete`` whether all of it was, ``ended`` whether the
    line is done with it (complete, or cut short by a reader that hung up). ``delay`` is the
    time from the end of the request on the wire to the start of the answer; ``request_end``
    the loop time when the request ended on the wire.
    """

    number: int
    requested_at: datetime
    request_end: float
    delay: float
    faults: tuple[AppliedFault, ...]
    values: MeterValues | None
    clean: bytes
    wire: bytes
    eight_bit: bool
    written: int = 0
    complete: bool = False
    ended: bool = False

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(f.kind for f in self.faults)

    @property
    def silent(self) -> bool:
        return "silent" in self.kinds

    @property
    def sent(self) -> bytes:
        """What has been sent for this exchange so far, in 7-bit form (bit 7 cleared).

        ``written`` counts a character before it is handed to the line, so a reader that has
        received the last character of a reply finds all of it here.
        """
        return strip_parity(self.wire[: self.written])

    def record(self) -> dict[str, Any]:
        """The ground truth of this exchange as a JSON object.

        ``values``: the meter's true registers (text of the exact values; ``null`` when
        silent); ``clean``: the reply they make (7-bit); ``sent``: what went out so far, 7-bit
        (``wire``: the same bytes as sent, in hex, parity bits included on 8-bit lines);
        ``faults``: each fault applied, in order. Non-printing characters are JSON escapes.
        """
        values = (
            None
            if self.values is None
            else {name: str(value) for name, value in self.values.as_dict().items()}
        )
        wire = self.wire[: self.written]
        return {
            "number": self.number,
            "requested_at": self.requested_at.isoformat(),
            "delay": round(self.delay, 6),
            "values": values,
            "clean": self.clean.decode("ascii"),
            "sent": strip_parity(wire).decode("ascii"),
            "wire": wire.hex(),
            "complete": self.complete,
            "faults": [
                {"kind": f.kind, "offset": f.offset, "detail": f.detail} for f in self.faults
            ],
        }


@dataclass
class ServedMeter:
    """A meter as the line serves it: its model, its own random draws, where it is, its log."""

    index: int
    model: MeterModel
    rng: random.Random
    port: str = ""
    log: list[Exchange] = field(default_factory=list)
    #: Called with the meter's index and each exchange once the line is done with it.
    on_ended: Callable[[int, Exchange], None] | None = None

    def ended(self, exchange: Exchange) -> None:
        if self.on_ended is not None:
            self.on_ended(self.index, exchange)


@dataclass(frozen=True, slots=True)
class LineRules:
    """What every line of one emulator shares: its speed, answer window, wire form and faults.

    ``write_interval``: group due characters into writes at most this often (``None``:
    automatic, from the replies in flight; 0: every character on its own).
    """

    character_time: float
    delay: tuple[float, float]
    eight_bit: bool
    bcc: BccAlgorithm
    faults: Faults
    write_interval: float | None = None

    def __post_init__(self) -> None:
        if not self.character_time > 0:
            raise UsageError(f"character time must be positive, got {self.character_time!r}")
        check_delay(self.delay)
        if self.write_interval is not None and not self.write_interval >= 0:
            raise UsageError(f"write_interval must be >= 0, got {self.write_interval!r}")

    def draw_delay(self, rng: random.Random) -> float:
        lo, hi = self.delay
        return lo if lo == hi else rng.uniform(lo, hi)


class _Write(Protocol):
    def __call__(self, data: bytes) -> None: ...


class Answering:
    """The requests waiting for an answer and the replies in flight, over all lines.

    Requests are answered soon after they end, in budgeted batches (:data:`ANSWER_BUDGET`),
    so that a burst of thousands of requests (snapshots, encoding) does not stall the
    replies in flight; the count of replies in flight sets how writes are grouped.
    """

    def __init__(self, rules: LineRules) -> None:
        self.rules = rules
        self.in_flight = 0
        self._queue: collections.deque[tuple[LineSession, float]] = collections.deque()
        self._handle: asyncio.Handle | None = None

    def queue(self, session: LineSession, request_end: float) -> None:
        """Answer ``session``'s request, which ended on the wire at loop time ``request_end``."""
        self._queue.append((session, request_end))
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._answer_some)

    def _answer_some(self) -> None:
        self._handle = None
        until = time.perf_counter() + ANSWER_BUDGET
        queue = self._queue
        while queue:
            session, request_end = queue.popleft()
            if not session.closed:
                session.answer(request_end)
            if time.perf_counter() > until:
                break
        if queue:
            self._handle = asyncio.get_running_loop().call_soon(self._answer_some)

    def write_interval(self) -> float:
        fixed = self.rules.write_interval
        if fixed is not None:
            return fixed
        return min(MAX_WRITE_INTERVAL, WRITE_INTERVAL_PER_REPLY * self.in_flight)

    def clear(self) -> None:
        """Forget the requests not answered yet (the emulator is closing)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._queue.clear()


class LineSession:
    """One line to one meter: request matching, the answer's schedule, the pacing.

    ``write`` puts bytes on the line; ``on_idle`` (if given) is called whenever the line has
    finished with a request (answered it completely or stayed silent).
    """

    def __init__(
        self,
        answering: Answering,
        meter: ServedMeter,
        write: _Write,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.answering = answering
        self.meter = meter
        self._rules = answering.rules
        self._write = write
        self._on_idle = on_idle
        self._loop = asyncio.get_running_loop()
        self._tail = b""  # the last bytes received, 7-bit, shorter than the request
        self._inbound_free = 0.0  # loop time when the inbound wire is free again
        self._exchange: Exchange | None = None
        self._start = 0.0  # loop time when the answer's first start bit goes out
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._pending = False  # a request is waiting to be answered

    @property
    def busy(self) -> bool:
        return self._pending or self._exchange is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def feed(self, data: bytes) -> None:
        """Bytes from the reader, as they arrive."""
        if self._closed or not data:
            return
        ct = self._rules.character_time
        begin = max(self._loop.time(), self._inbound_free)
        self._inbound_free = begin + len(data) * ct
        if self.busy:
            return  # answering: not listening
        head = len(self._tail)
        text = self._tail + strip_parity(data)
        at = text.find(REQUEST)
        if at < 0:
            self._tail = text[-(len(REQUEST) - 1) :]
            return
        self._tail = b""
        last = at + len(REQUEST) - 1 - head  # index in data of the request's LF
        self._pending = True
        self.answering.queue(self, begin + (last + 1) * ct)

    def answer(self, request_end: float) -> None:
        """Decide the faults and the delay, take the model's snapshot, schedule the reply."""
        self._pending = False
        rules, meter = self._rules, self.meter
        faults = rules.faults
        number = len(meter.log) + 1
        kinds = faults.for_request(number, meter.rng)
        delay = rules.draw_delay(meter.rng)
        if "silent" in kinds:
            damage = faults.damage(b"", kinds, meter.rng, eight_bit=rules.eight_bit)
            meter.log.append(
                Exchange(
                    number=number,
                    requested_at=meter.model.clock.now(),
                    request_end=request_end,
                    delay=delay,
                    faults=damage.faults,
                    values=None,
                    clean=b"",
                    wire=b"",
                    eight_bit=rules.eight_bit,
                    complete=True,
                    ended=True,
                )
            )
            meter.ended(meter.log[-1])
            self._idle()
            return
        snap = meter.model.snapshot(bcc=rules.bcc)
        damage = faults.damage(snap.telegram, kinds, meter.rng, eight_bit=rules.eight_bit)
        if damage.late_delay is not None:
            delay = damage.late_delay
        exchange = Exchange(
            number=number,
            requested_at=snap.at,
            request_end=request_end,
            delay=delay,
            faults=damage.faults,
            values=snap.values,
            clean=snap.telegram,
            wire=damage.wire,
            eight_bit=rules.eight_bit,
        )
        meter.log.append(exchange)
        self._exchange = exchange
        self._start = request_end + delay
        self.answering.in_flight += 1
        self._timer = self._loop.call_at(self._start + rules.character_time, self._pump)

    def _pump(self) -> None:
        """Write the characters due by now; plan the next write."""
        self._timer = None
        exchange = self._exchange
        if exchange is None or self._closed:
            return
        ct = self._rules.character_time
        wire = exchange.wire
        size = len(wire)
        now = self._loop.time()
        due = min(size, int((now - self._start) / ct + 1e-6))
        if due > exchange.written:
            chunk = wire[exchange.written : due]
            exchange.written = due
            self._write(chunk)
        if exchange.written >= size:
            exchange.complete = True
            self._finish()
            return
        when = self._start + (exchange.written + 1) * ct
        group = self.answering.write_interval()
        if group > 0:
            when = min(max(when, now + group), self._start + size * ct)
        self._timer = self._loop.call_at(when, self._pump)

    def _end_exchange(self) -> None:
        exchange = self._exchange
        if exchange is not None:
            exchange.ended = True
            self._exchange = None
            self.answering.in_flight -= 1
            self.meter.ended(exchange)

    def _finish(self) -> None:
        self._end_exchange()
        self._idle()

    def _idle(self) -> None:
        self._tail = b""
        if self._on_idle is not None:
            self._on_idle()

    def close(self) -> None:
        """The line is gone: stop answering (the current reply stays incomplete)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._end_exchange()
        self._closed = True
