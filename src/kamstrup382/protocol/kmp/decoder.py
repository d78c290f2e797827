"""The incremental KMP decoder: fed chunks as they arrive, done the moment the stop byte does.

::

    decoder = FrameDecoder(Direction.REPLY)
    for chunk in chunks:
        event = decoder.feed(chunk)      # None: more bytes needed
        if event is not None:
            break                        # a Frame (checked) or ACK_RECEIVED

Bytes before the expected start byte are skipped and counted (``skipped``): the echo of the
request an optical head or a meter sends back (stuffing keeps ``0x40`` out of any frame, so
the echo cannot hide one), and line noise. A lone ``0x06`` where a frame could start is the
acknowledgement. The buffer is bounded: a frame longer than ``max_frame`` wire bytes, or more
than ``max_skip`` bytes without a start byte, is a :class:`FramingError`. Each chunk is
searched once (``bytes.find``), so feeding a reply byte by byte costs linear work. Bytes after
the stop byte are kept in ``rest``; the decoder takes no more after its event.
"""

from __future__ import annotations

import enum

from kamstrup382.errors import FramingError, UsageError
from kamstrup382.protocol.kmp.frame import ACK, STOP, Direction, Frame, parse_frame

__all__ = [
    "ACK_RECEIVED",
    "MAX_FRAME",
    "MAX_SKIP",
    "Ack",
    "FrameDecoder",
    "decode_capture",
    "decode_frames",
]

#: The longest frame accepted, in wire bytes (a reply of 8 registers with 8-byte mantissas,
#: every byte stuffed, is 2 + 2 * (2 + 8 * 13 + 2) = 218).
MAX_FRAME = 512
#: The most bytes skipped before the start byte (an echoed request is at most MAX_FRAME).
MAX_SKIP = 2 * MAX_FRAME


class Ack(enum.Enum):
    ACK_RECEIVED = "ack"


ACK_RECEIVED = Ack.ACK_RECEIVED


class FrameDecoder:
    """Finds one frame of ``direction`` in the bytes fed; see the module docstring."""

    def __init__(
        self,
        direction: Direction = Direction.REPLY,
        *,
        max_frame: int = MAX_FRAME,
        max_skip: int = MAX_SKIP,
        offset: int = 0,
    ) -> None:
        if max_frame < 6 or max_skip < 0:
            raise UsageError(f"max_frame {max_frame} below 6 or max_skip {max_skip} below 0")
        self.direction = direction
        self.max_frame = max_frame
        self.max_skip = max_skip
        self.skipped = 0
        self.received = offset  # stream position of the next byte fed
        self.rest = b""
        self._start = direction.start
        self._frame = bytearray()
        self._in_frame = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def in_frame(self) -> bool:
        """The start byte has arrived (the answer has begun)."""
        return self._in_frame

    def feed(self, data: bytes) -> Frame | Ack | None:
        """Feed a chunk; the frame (or :data:`ACK_RECEIVED`) when it is complete, else None."""
        if self._done:
            raise UsageError("the KMP decoder has its frame already; start a new one")
        base = self.received
        self.received += len(data)
        at = 0
        if not self._in_frame:
            at = self._find_start(data, base)
            if at < 0:
                return None
            if data[at] == ACK:
                self._done = True
                self.rest = bytes(data[at + 1 :])
                return ACK_RECEIVED
        stop = data.find(STOP, at)
        end = len(data) if stop < 0 else stop + 1
        if len(self._frame) + end - at > self.max_frame:
            raise FramingError(
                f"KMP frame longer than {self.max_frame} bytes without its stop byte",
                offset=base + at + self.max_frame - len(self._frame),
            )
        self._frame += data[at:end]
        if stop < 0:
            return None
        self._done = True
        self.rest = bytes(data[end:])
        wire = bytes(self._frame)
        return parse_frame(wire, offset=base + end - len(wire))

    def _find_start(self, data: bytes, base: int) -> int:
        """Index of the start (or a lone ACK) in ``data``; -1 after skipping all of it."""
        start = data.find(self._start)
        ack = data.find(ACK)
        candidates = [i for i in (start, ack) if i >= 0]
        if not candidates:
            self._skip(len(data), base)
            return -1
        at = min(candidates)
        self._skip(at, base)
        if data[at] == self._start:
            self._in_frame = True
        return at

    def _skip(self, count: int, base: int) -> None:
        self.skipped += count
        if self.skipped > self.max_skip:
            raise FramingError(
                f"no KMP {self.direction.value} start byte 0x{self._start:02x} "
                f"in {self.skipped} bytes",
                offset=base + count - 1,
            )


def decode_frames(data: bytes, direction: Direction) -> list[Frame | Ack]:
    """Every frame (and acknowledgement) of ``direction`` in a complete capture, in order."""
    events: list[Frame | Ack] = []
    offset = 0
    while offset < len(data):
        decoder = FrameDecoder(direction, offset=offset)
        event = decoder.feed(data[offset:])
        if event is None:
            if decoder.in_frame:
                raise FramingError("KMP frame has no stop byte 0x0d", offset=len(data) - 1)
            break
        events.append(event)
        offset = len(data) - len(decoder.rest)
    return events


def decode_capture(data: bytes) -> list[Frame | Ack]:
    """Every frame and acknowledgement of a captured exchange, each frame's direction told by
    its own start byte (a request, its echo, the reply); a :class:`FramingError` for a byte
    that belongs to none, :class:`StuffingError` / :class:`CrcError` as :func:`parse_frame`."""
    events: list[Frame | Ack] = []
    at = 0
    while at < len(data):
        byte = data[at]
        if byte == ACK:
            events.append(ACK_RECEIVED)
            at += 1
            continue
        if Direction.of_start(byte) is None:
            raise FramingError(
                f"0x{byte:02x} where a KMP frame (0x80, 0x40) or an acknowledgement (0x06) "
                "must start",
                offset=at,
            )
        stop = data.find(STOP, at)
        if stop < 0:
            raise FramingError("KMP frame has no stop byte 0x0d", offset=len(data) - 1)
        events.append(parse_frame(data[at : stop + 1], offset=at))
        at = stop + 1
    if not events:
        raise FramingError("no KMP frame in an empty capture", offset=0)
    return events
