"""The incremental KMP decoder and the frame checks: each error typed, naming what and where."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kamstrup382.errors import (
    CrcError,
    FramingError,
    StuffingError,
    UnknownCommandError,
    UsageError,
)
from kamstrup382.protocol.kmp import (
    ACK_RECEIVED,
    Direction,
    Frame,
    FrameDecoder,
    GetRegisterRequest,
    RegisterReply,
    RegisterValue,
    decode_frames,
    decode_message,
    encode_frame,
    encode_message,
    parse_frame,
)

REQUEST = encode_message(GetRegisterRequest((0x0001, 0x041E)))
REPLY = encode_message(
    RegisterReply(
        (
            RegisterValue.of(0x0001, 2, Decimal(12345)),
            RegisterValue.of(0x041E, 33, Decimal("231.4")),
        )
    )
)


@pytest.mark.parametrize("split", ["whole", "halves", "bytes"])
def test_echo_then_reply_in_pieces(split: str) -> None:
    wire = REQUEST + REPLY + b"\x00trailing"
    if split == "whole":
        chunks = [wire]
    elif split == "halves":
        chunks = [wire[: len(wire) // 2], wire[len(wire) // 2 :]]
    else:
        chunks = [wire[i : i + 1] for i in range(len(wire))]
    decoder = FrameDecoder(Direction.REPLY)
    event = None
    fed = 0
    for chunk in chunks:
        fed += 1
        event = decoder.feed(chunk)
        if event is not None:
            break
    assert isinstance(event, Frame)
    assert decoder.skipped == len(REQUEST)
    reply = decode_message(event)
    assert isinstance(reply, RegisterReply)
    assert [r.value for r in reply.registers] == [Decimal(12345), Decimal("231.4")]
    assert [r.name for r in reply.registers] == ["energy", "voltage_l1"]
    assert [r.unit for r in reply.registers] == ["kWh", "V"]
    if split == "bytes":
        assert fed == len(REQUEST) + len(REPLY)  # done on the stop byte, not a byte later
    assert decoder.done
    with pytest.raises(UsageError):
        decoder.feed(b"\x40")


def test_lone_ack() -> None:
    decoder = FrameDecoder(Direction.REPLY)
    assert decoder.feed(b"\x06rest") is ACK_RECEIVED
    assert decoder.rest == b"rest"


def test_crc_error_carries_both_values() -> None:
    frame = Frame(Direction.REPLY, 0x3F, 0x02, bytes.fromhex("01234567"))
    wire = bytearray(encode_frame(frame))
    wire[-2] ^= 0x01  # the CRC's low byte (0x56, not reserved either way)
    with pytest.raises(CrcError) as caught:
        parse_frame(bytes(wire), offset=100)
    assert caught.value.received == 0xE957
    assert caught.value.computed == 0xE956
    assert caught.value.offset == 100 + len(wire) - 1
    assert "crc 0xe957 received, 0xe956 computed" in str(caught.value)
    assert caught.value.kind == "crc"


@pytest.mark.parametrize(
    ("wire", "error", "offset", "text"),
    [
        ("40 3F 1B 01 00 00 0D", StuffingError, 3, "stands for 0xfe"),
        ("40 3F 10 06 00 00 0D", StuffingError, 3, "reserved byte 0x06"),
        ("40 3F 10 00 1B 0D", StuffingError, 4, "escape 0x1b at the end"),
        ("41 3F 10 00 00 0D", FramingError, 0, "starts with 0x41"),
        ("40 3F 10 00 00", FramingError, 4, "no stop byte"),
        ("40 3F 10 00 0D 00", FramingError, 5, "1 bytes after its stop byte"),
        ("40 3F 10 0D", FramingError, 3, "at least 4"),
    ],
)
def test_frame_errors_name_what_and_where(
    wire: str, error: type[Exception], offset: int, text: str
) -> None:
    with pytest.raises(error) as caught:
        parse_frame(bytes.fromhex(wire))
    assert caught.type is error
    assert getattr(caught.value, "offset", None) == offset
    assert text in str(caught.value)


def test_unknown_command() -> None:
    frame = parse_frame(encode_frame(Frame(Direction.REPLY, 0x3F, 0x99, b"")))
    with pytest.raises(UnknownCommandError) as caught:
        decode_message(frame)
    assert caught.value.cid == 0x99
    assert "0x99" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ("00 01 02 04", "4 of its 5 header bytes"),
        ("00 01 02 04 00 01 02", "4-byte mantissa, 2 bytes follow"),
        ("00 01 02 00 00", "0-byte mantissa"),
    ],
)
def test_truncated_register_reply(data: str, text: str) -> None:
    frame = parse_frame(encode_frame(Frame(Direction.REPLY, 0x3F, 0x10, bytes.fromhex(data))))
    with pytest.raises(FramingError, match=text):
        decode_message(frame)


def test_request_limits() -> None:
    with pytest.raises(UsageError, match="1 to 8"):
        GetRegisterRequest(tuple(range(9)))
    frame = parse_frame(encode_frame(Frame(Direction.REQUEST, 0x3F, 0x10, b"\x02\x00\x01")))
    with pytest.raises(FramingError, match="count 2 with 2 id bytes"):
        decode_message(frame)


def test_buffer_is_bounded() -> None:
    decoder = FrameDecoder(Direction.REPLY, max_frame=32)
    assert decoder.feed(b"\x40" + b"\x01" * 30) is None
    with pytest.raises(FramingError, match="longer than 32 bytes"):
        decoder.feed(b"\x01" * 10)


def test_skipping_is_bounded() -> None:
    decoder = FrameDecoder(Direction.REPLY, max_skip=10)
    assert decoder.feed(b"\x00" * 10) is None
    with pytest.raises(FramingError, match="no KMP reply start byte 0x40 in 11 bytes"):
        decoder.feed(b"\x00")


def test_decode_frames_of_a_capture() -> None:
    events = decode_frames(REPLY + b"\x06" + REPLY, Direction.REPLY)
    assert len(events) == 3
    assert events[1] is ACK_RECEIVED
    with pytest.raises(FramingError, match="no stop byte"):
        decode_frames(REPLY[:-1], Direction.REPLY)
