"""KMP frames: start byte, byte stuffing, CRC-16, stop byte. Stdlib only, no I/O.

::

    request  0x80 | dst  cid  data...  crc_hi crc_lo | 0x0D
    reply    0x40 | dst  cid  data...  crc_hi crc_lo | 0x0D
    ack      0x06                        (a lone byte, no frame around it)

- ``dst`` is the destination address (``0x3F``: the meter itself), ``cid`` the command id.
- The CRC is CRC-16/CCITT as XMODEM (polynomial ``0x1021``, initial value 0, no reflection,
  no final XOR) over ``dst`` .. the last data byte, sent high byte first; over ``dst`` .. the
  CRC's low byte the remainder is 0.
- Between the start and the stop byte, each of :data:`RESERVED` (``0x06 0x0D 0x1B 0x40
  0x80``) is sent as ``0x1B`` followed by the byte XOR ``0xFF``; so no start, stop or
  acknowledgement byte ever appears inside a frame, and a reader can skip to the reply's
  ``0x40`` past the echo of its own request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kamstrup382.errors import CrcError, FramingError, StuffingError, UsageError

__all__ = [
    "ACK",
    "ESCAPE",
    "METER_ADDRESS",
    "MIN_BODY",
    "RESERVED",
    "START_FROM_METER",
    "START_TO_METER",
    "STOP",
    "Direction",
    "Frame",
    "crc16",
    "destuff",
    "encode_frame",
    "parse_frame",
    "stuff",
]

START_TO_METER = 0x80
START_FROM_METER = 0x40
STOP = 0x0D
ACK = 0x06
ESCAPE = 0x1B
#: The bytes that are escaped inside a frame.
RESERVED = frozenset((ACK, STOP, ESCAPE, START_FROM_METER, START_TO_METER))
#: The meter's own address.
METER_ADDRESS = 0x3F
#: Address, command id and the two CRC bytes: the shortest destuffed frame body.
MIN_BODY = 4


class Direction(enum.StrEnum):
    """Who sends the frame: ``request`` (to the meter, ``0x80``) or ``reply`` (``0x40``)."""

    REQUEST = "request"
    REPLY = "reply"

    @property
    def start(self) -> int:
        return START_TO_METER if self is Direction.REQUEST else START_FROM_METER

    @classmethod
    def of_start(cls, byte: int) -> Direction | None:
        """The direction a start byte announces (``None``: not a start byte)."""
        return _BY_START.get(byte)


_BY_START = {START_TO_METER: Direction.REQUEST, START_FROM_METER: Direction.REPLY}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/CCITT, XMODEM variant: polynomial 0x1021, initial 0, MSB first, no final XOR."""
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def stuff(body: bytes) -> bytes:
    """``body`` with each reserved byte sent as ``0x1B``, byte XOR ``0xFF``."""
    out = bytearray()
    for byte in body:
        if byte in RESERVED:
            out.append(ESCAPE)
            out.append(byte ^ 0xFF)
        else:
            out.append(byte)
    return bytes(out)


def destuff(wire: bytes, *, offset: int = 0) -> bytes:
    """The bytes ``wire`` (between start and stop byte) stands for, in one pass.

    ``offset`` is the stream position of ``wire[0]``, for the errors: a
    :class:`StuffingError` for an escape at the end, an escape before a byte that stands for
    no reserved byte, or a reserved byte that arrives unescaped.
    """
    out = bytearray()
    escaped = False
    for index, byte in enumerate(wire):
        if escaped:
            value = byte ^ 0xFF
            if value not in RESERVED:
                raise StuffingError(
                    f"escape 0x1b followed by 0x{byte:02x}, which stands for 0x{value:02x}, "
                    "not a reserved byte",
                    offset=offset + index,
                )
            out.append(value)
            escaped = False
        elif byte == ESCAPE:
            escaped = True
        elif byte in RESERVED:
            raise StuffingError(
                f"reserved byte 0x{byte:02x} inside a frame without its escape",
                offset=offset + index,
            )
        else:
            out.append(byte)
    if escaped:
        raise StuffingError("escape 0x1b at the end of the frame", offset=offset + len(wire) - 1)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Frame:
    """One KMP frame, destuffed and checked: who sent it, to which address, which command."""

    direction: Direction
    address: int
    cid: int
    data: bytes = b""

    def __post_init__(self) -> None:
        for what, value in (("address", self.address), ("command id", self.cid)):
            if not 0 <= value <= 0xFF:
                raise UsageError(f"KMP {what} {value} is not one byte")

    @property
    def body(self) -> bytes:
        """Address, command id and data: what the CRC covers."""
        return bytes((self.address, self.cid)) + self.data

    @property
    def crc(self) -> int:
        return crc16(self.body)


def encode_frame(frame: Frame) -> bytes:
    """The frame as it goes on the wire: start byte, stuffed body and CRC, stop byte."""
    body = frame.body
    crc = crc16(body)
    return bytes((frame.direction.start,)) + stuff(body + crc.to_bytes(2, "big")) + bytes((STOP,))


def parse_frame(wire: bytes, *, offset: int = 0) -> Frame:
    """The frame in ``wire``, which holds exactly one frame from its start to its stop byte.

    Raises :class:`FramingError` (start or stop byte, length), :class:`StuffingError`,
    :class:`CrcError` (with both values); ``offset`` is the stream position of ``wire[0]``.
    """
    if not wire:
        raise FramingError("empty KMP frame", offset=offset)
    direction = Direction.of_start(wire[0])
    if direction is None:
        raise FramingError(
            f"KMP frame starts with 0x{wire[0]:02x}, not 0x80 (request) or 0x40 (reply)",
            offset=offset,
        )
    stop = wire.find(STOP)
    if stop == -1:
        raise FramingError("KMP frame has no stop byte 0x0d", offset=offset + len(wire) - 1)
    if stop != len(wire) - 1:
        raise FramingError(
            f"KMP frame has {len(wire) - 1 - stop} bytes after its stop byte",
            offset=offset + stop + 1,
        )
    body = destuff(wire[1:stop], offset=offset + 1)
    if len(body) < MIN_BODY:
        raise FramingError(
            f"KMP frame of {len(body)} bytes between start and stop (destuffed): "
            f"at least {MIN_BODY} (address, command id, CRC)",
            offset=offset + stop,
        )
    received = int.from_bytes(body[-2:], "big")
    computed = crc16(body[:-2])
    if received != computed:
        raise CrcError(
            f"KMP crc 0x{received:04x} received, 0x{computed:04x} computed",
            received=received,
            computed=computed,
            offset=offset + stop,
        )
    return Frame(direction, body[0], body[1], body[2:-2])
