"""Published KMP exchanges (tests/data/kmp/README.md cites each) decoded to their values."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from kamstrup382.protocol.kmp import (
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
    crc16,
    decode_message,
    decode_value,
    destuff,
    encode_message,
    parse_frame,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "kmp"


def frame_bytes(name: str) -> bytes:
    return bytes.fromhex((DATA / name).read_text(encoding="ascii"))


PUBLISHED: list[tuple[str, Direction, Message]] = [
    ("doc-get-type-request.hex", Direction.REQUEST, GetTypeRequest()),
    ("doc-get-type-reply.hex", Direction.REPLY, TypeReply(0x0004, 0x0601)),
    ("doc-get-serial-no-request.hex", Direction.REQUEST, GetSerialNoRequest()),
    ("doc-get-serial-no-reply.hex", Direction.REPLY, SerialNoReply(19088743)),
    ("doc-get-register-request.hex", Direction.REQUEST, GetRegisterRequest((0x0080,))),
    (
        "doc-get-register-reply.hex",
        Direction.REPLY,
        RegisterReply((RegisterValue(0x0080, 0x16, Decimal("19591204E+17"), 4),)),
    ),
    ("flowiq-get-register-request.hex", Direction.REQUEST, GetRegisterRequest((0x0044,))),
]


@pytest.mark.parametrize(("name", "direction", "message"), PUBLISHED, ids=lambda v: str(v)[:30])
def test_published_frame_decodes_to_what_its_source_reports(
    name: str, direction: Direction, message: Message
) -> None:
    wire = frame_bytes(name)
    frame = parse_frame(wire)
    assert frame.direction is direction
    assert frame.address == 0x3F
    decoded = decode_message(frame)
    assert decoded == message
    assert encode_message(message) == wire  # and back, byte for byte (stuffing included)


def test_published_values_compare_equal_and_keep_their_digits() -> None:
    reply = decode_message(parse_frame(frame_bytes("doc-get-register-reply.hex")))
    assert isinstance(reply, RegisterReply)
    (register,) = reply.registers
    assert register.unit == "kW"
    assert register.value == Decimal("1.9591204E+24")
    assert format(register.value, "f") == "1959120400000000000000000"


def test_published_type_reply_names_its_revision() -> None:
    reply = decode_message(parse_frame(frame_bytes("doc-get-type-reply.hex")))
    assert isinstance(reply, TypeReply)
    assert reply.revision_text == "F1"


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        ("3F 01", 0x058A),
        ("3F 02", 0x35E9),
        ("3F 10 01 0080", 0xD408),
        ("3F 01 0004 0601 2699", 0),
        ("3F 02 01234567 E956", 0),
        ("3F 10 0080 16 04 11 012AF024 6303", 0),
    ],
)
def test_published_crcs(data: str, crc: int) -> None:
    assert crc16(bytes.fromhex(data)) == crc


def test_published_physical_layer_stuffing_example() -> None:
    # Kamstrup's KMP description, 3.1: 04 0D 00 06 goes on the wire as 04 1BF2 00 1BF9.
    assert destuff(bytes.fromhex("04 1BF2 00 1BF9")) == bytes.fromhex("04 0D 00 06")


@pytest.mark.parametrize(
    ("sign_exponent", "mantissa", "value"),
    [
        (0xC2, "00003039", "-123.45"),  # Kamstrup doc 4.2, example 1
        (0x03, "05397FB1", "87654321000"),  # example 2
        (0x03, "FF", "255000"),  # example 3
        (0x43, "000000FB", "0.251"),  # PyKMP: a MULTICAL 403's value
        (0x42, "18C8", "63.44"),  # PyKMP: exact where a float is not
    ],
)
def test_published_value_examples(sign_exponent: int, mantissa: str, value: str) -> None:
    decoded = decode_value(sign_exponent, bytes.fromhex(mantissa))
    assert decoded == Decimal(value)
    assert RegisterValue(1, 0, decoded, len(bytes.fromhex(mantissa))).encode()[4:] == bytes(
        (sign_exponent,)
    ) + bytes.fromhex(mantissa)


@pytest.mark.parametrize(("name", "direction", "message"), PUBLISHED, ids=lambda v: str(v)[:30])
@pytest.mark.parametrize("split", ["whole", "halves", "bytes"])
def test_published_frame_fed_in_pieces(
    name: str, direction: Direction, message: Message, split: str
) -> None:
    wire = frame_bytes(name)
    pieces = {
        "whole": [wire],
        "halves": [wire[: len(wire) // 2], wire[len(wire) // 2 :]],
        "bytes": [wire[i : i + 1] for i in range(len(wire))],
    }[split]
    decoder = FrameDecoder(direction)
    events = [decoder.feed(piece) for piece in pieces]
    assert events[:-1] == [None] * (len(pieces) - 1)  # nothing before the stop byte
    frame = events[-1]
    assert isinstance(frame, Frame)
    assert decode_message(frame) == message
