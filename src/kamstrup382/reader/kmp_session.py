"""A KMP readout without I/O: the requests to send, each reply checked, the times passed in.

::

    readout = KmpReadout(register_ids, identify=True)  # GetType, GetSerialNo, then GetRegister
                                               # requests of at most 8 registers each
    exchange = KmpExchange(request, timing)    # one request and its reply
    exchange.sent(monotonic)                   # the request's bytes were written
    frame = exchange.receive(chunk, monotonic) # None until the stop byte arrives
    reply = exchange.reply                     # checked: address, command, registers asked
    readout.answered(reply, attempts, received)  # after each request, then
    reading = readout.reading(port=..., baud=..., stop_bits=..., requested_at=..., duration=...)

Both readers (:mod:`.kmp_sync`, :mod:`.kmp_aio`) go through these: they only move bytes, keep
time and try an exchange again.

Timing (:class:`KmpTiming`), in seconds: the reply's first byte must arrive within the
request's transmit time + :data:`ANSWER_WINDOW` + the margin (the 382Lx7 component waits
500 ms after transmitting, see docs/kmp.md); once it has begun, each further byte within
:data:`INTER_CHARACTER_CHARS` character times (never under :data:`INTER_CHARACTER_FLOOR`) +
the margin; an exchange ends the moment its stop byte arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kamstrup382.errors import FramingError, ReadTimeout, UsageError
from kamstrup382.protocol.kmp import (
    ACK_RECEIVED,
    MAX_REGISTERS,
    METER_ADDRESS,
    Direction,
    Frame,
    FrameDecoder,
    GetRegisterRequest,
    GetSerialNoRequest,
    GetTypeRequest,
    Message,
    RegisterReply,
    RegisterValue,
    SerialNoReply,
    TypeReply,
    decode_message,
    encode_message,
)
from kamstrup382.reader.kmp_reading import KmpReading

__all__ = [
    "ANSWER_WINDOW",
    "INTER_CHARACTER_CHARS",
    "INTER_CHARACTER_FLOOR",
    "KmpExchange",
    "KmpReadout",
    "KmpTiming",
    "plan_requests",
]

#: Seconds from the request's end to the reply's first byte.
ANSWER_WINDOW = 0.5
#: Character times of silence inside a reply that end it as truncated.
INTER_CHARACTER_CHARS = 20
#: Never less than this for the inter-character timeout (OS and gateway jitter).
INTER_CHARACTER_FLOOR = 0.05


@dataclass(frozen=True, slots=True)
class KmpTiming:
    baud: int = 9600
    bits_per_character: int = 10
    answer_window: float = ANSWER_WINDOW
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.baud <= 0 or self.bits_per_character not in (10, 11):
            raise UsageError(f"baud {self.baud}, {self.bits_per_character} bits: not a KMP line")
        if self.answer_window <= 0 or self.margin < 0:
            raise UsageError("answer window must be positive and the margin not negative")

    @property
    def character_time(self) -> float:
        return self.bits_per_character / self.baud

    @property
    def inter_character(self) -> float:
        return max(INTER_CHARACTER_FLOOR, INTER_CHARACTER_CHARS * self.character_time) + self.margin


def plan_requests(register_ids: tuple[int, ...]) -> list[GetRegisterRequest]:
    """The GetRegister requests for ``register_ids``, in order, at most 8 registers each."""
    if not register_ids:
        raise UsageError("a KMP readout needs at least one register")
    if len(set(register_ids)) != len(register_ids):
        raise UsageError("a register asked for twice in one KMP readout")
    return [
        GetRegisterRequest(register_ids[i : i + MAX_REGISTERS])
        for i in range(0, len(register_ids), MAX_REGISTERS)
    ]


class KmpReadout:
    """One readout's requests and what their replies gave; see the module docstring.

    ``identify``: ask the meter what it is first (GetType, GetSerialNo), so that the reading
    says which meter answered (the collector asks in every readout: a meter swapped on a port
    is seen at once).
    """

    def __init__(self, register_ids: tuple[int, ...], *, identify: bool = False) -> None:
        self.register_ids = register_ids
        identity: list[Message] = [GetTypeRequest(), GetSerialNoRequest()] if identify else []
        self.requests: list[Message] = [*identity, *plan_requests(register_ids)]
        self.type: TypeReply | None = None
        self.serial: int | None = None
        self.attempts = 0
        self.received = 0
        self._got: dict[int, RegisterValue] = {}

    def answered(self, reply: Message, attempts: int, received: int) -> None:
        """The checked ``reply`` to the next request, after ``attempts`` tries and
        ``received`` bytes."""
        self.attempts += attempts
        self.received += received
        if isinstance(reply, RegisterReply):
            self._got.update(reply.by_id())
        elif isinstance(reply, TypeReply):
            self.type = reply
        elif isinstance(reply, SerialNoReply):
            self.serial = reply.serial

    def reading(
        self, *, port: str, baud: int, stop_bits: int, requested_at: datetime, duration: float
    ) -> KmpReading:
        """The reading once every request was answered."""
        got = self._got
        return KmpReading(
            port=port,
            baud=baud,
            requested_at=requested_at,
            duration=duration,
            registers=tuple(got[i] for i in self.register_ids if i in got),
            missing=tuple(i for i in self.register_ids if i not in got),
            exchanges=len(self.requests),
            attempts=self.attempts,
            received=self.received,
            stop_bits=stop_bits,
            meter_type=None if self.type is None else self.type.meter_type,
            software_revision=None if self.type is None else self.type.revision_text,
            serial=self.serial,
        )


class KmpExchange:
    """One request and its reply; see the module docstring."""

    def __init__(self, request: Message, timing: KmpTiming, address: int = METER_ADDRESS) -> None:
        self.request = request
        self.timing = timing
        self.address = address
        self.wire = encode_message(request, address)
        self.decoder = FrameDecoder(Direction.REPLY)
        self.reply: Message | None = None
        self.sent_at: float | None = None
        self.first_byte_at: float | None = None
        self.done_at: float | None = None
        self.timeout_at = float("inf")

    def sent(self, now: float) -> None:
        self.sent_at = now
        t = self.timing
        self.timeout_at = now + len(self.wire) * t.character_time + t.answer_window + t.margin

    @property
    def received(self) -> int:
        return self.decoder.received

    def receive(self, data: bytes, now: float) -> Message | None:
        """Feed a chunk; the checked reply when its stop byte has arrived, else ``None``."""
        event = self.decoder.feed(data)
        if self.decoder.in_frame and self.first_byte_at is None:
            self.first_byte_at = now
        if self.decoder.in_frame:
            self.timeout_at = now + self.timing.inter_character
        if event is None:
            return None
        self.done_at = now
        if event is ACK_RECEIVED:
            raise FramingError(f"KMP acknowledgement where the {self._name} reply belongs")
        assert isinstance(event, Frame)
        self.reply = self._check(event)
        return self.reply

    @property
    def _name(self) -> str:
        return type(self.request).command.name.lower()

    def _check(self, frame: Frame) -> Message:
        if frame.address != self.address:
            raise FramingError(
                f"KMP reply from address 0x{frame.address:02x}, asked 0x{self.address:02x}"
            )
        reply = decode_message(frame)
        if reply.command is not self.request.command:
            raise FramingError(
                f"KMP reply to {reply.command.name.lower()} where the {self._name} reply belongs"
            )
        if isinstance(self.request, GetRegisterRequest):
            assert isinstance(reply, RegisterReply)
            asked = set(self.request.ids)
            ids = [r.id for r in reply.registers]
            extra = [i for i in ids if i not in asked]
            if extra or len(set(ids)) != len(ids):
                raise FramingError(
                    "KMP reply holds registers not asked for or twice: "
                    + ", ".join(f"0x{i:04x}" for i in ids)
                )
        return reply

    def expired(self, now: float) -> ReadTimeout:
        phase = "answer" if self.first_byte_at is None else "inter_character"
        return ReadTimeout(
            f"no KMP {self._name} reply"
            if phase == "answer"
            else f"KMP {self._name} reply stopped",
            phase=phase,
            received=self.decoder.received,
        )
