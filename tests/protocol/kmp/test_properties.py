"""KMP properties: round trips, every single-bit error detected, arbitrary bytes in arbitrary
chunks raising only the package's errors."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.errors import Kamstrup382Error, ProtocolError
from kamstrup382.protocol.kmp import (
    KMP_382_REGISTERS,
    MAX_REGISTERS,
    RESERVED,
    Direction,
    Frame,
    FrameDecoder,
    GetRegisterRequest,
    RegisterReply,
    RegisterValue,
    decode_capture,
    decode_message,
    decode_value,
    destuff,
    encode_frame,
    encode_message,
    encode_value,
    parse_frame,
    stuff,
)

values = st.builds(
    lambda sign, mantissa, exponent: Decimal((sign, tuple(map(int, str(mantissa))), exponent)),
    st.integers(0, 1),
    st.integers(0, 2**64 - 1),
    st.integers(-63, 63),
)
registers = st.builds(
    RegisterValue.of,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    values,
)
frames = st.builds(
    Frame,
    st.sampled_from(Direction),
    st.integers(0, 0xFF),
    st.integers(0, 0xFF),
    st.binary(max_size=64),
)
#: Replies built around the reserved bytes, so that stuffing is exercised on every frame.
reserved_heavy = st.binary(max_size=40).map(
    lambda b: bytes(x if x % 3 else sorted(RESERVED)[x % 5] for x in b)
)


@given(st.binary(max_size=200))
def test_stuff_destuff_round_trip(body: bytes) -> None:
    wire = stuff(body)
    assert all(b not in RESERVED - {0x1B} for b in wire)
    assert destuff(wire) == body


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire[-1] == 0x0D and wire.count(0x0D) == 1
    assert parse_frame(wire) == frame


@given(st.sampled_from(Direction), reserved_heavy)
def test_frame_round_trip_through_stuffing(direction: Direction, data: bytes) -> None:
    frame = Frame(direction, 0x3F, 0x10, data)
    assert parse_frame(encode_frame(frame)) == frame


@given(values)
def test_value_round_trip_keeps_the_digits(value: Decimal) -> None:
    sign_exponent, mantissa = encode_value(value)
    decoded = decode_value(sign_exponent, mantissa)
    assert decoded.as_tuple() == value.as_tuple() or (value == 0 and decoded == 0)


@given(st.lists(registers, max_size=MAX_REGISTERS))
def test_register_reply_round_trip(regs: list[RegisterValue]) -> None:
    reply = RegisterReply(tuple(regs))
    wire = encode_message(reply)
    decoder = FrameDecoder(Direction.REPLY)
    event = decoder.feed(wire)
    assert isinstance(event, Frame)
    assert decode_message(event) == reply


@given(st.lists(st.sampled_from([r.id for r in KMP_382_REGISTERS]), min_size=1, max_size=8))
def test_register_request_round_trip(ids: list[int]) -> None:
    request = GetRegisterRequest(tuple(ids))
    assert decode_message(parse_frame(encode_message(request))) == request


def _every_single_bit_error_detected(wire: bytes) -> None:
    for index in range(len(wire)):
        for bit in range(8):
            damaged = bytearray(wire)
            damaged[index] ^= 1 << bit
            try:
                parse_frame(bytes(damaged))
            except ProtocolError:
                continue
            raise AssertionError(f"bit {bit} of byte {index} flipped in {wire.hex(' ')}: not seen")


@settings(max_examples=60)
@given(st.lists(registers, min_size=1, max_size=MAX_REGISTERS))
def test_every_single_bit_error_in_a_reply_is_detected(regs: list[RegisterValue]) -> None:
    _every_single_bit_error_detected(encode_message(RegisterReply(tuple(regs))))


@settings(max_examples=60)
@given(frames)
def test_every_single_bit_error_in_any_frame_is_detected(frame: Frame) -> None:
    _every_single_bit_error_detected(encode_frame(frame))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


@given(
    st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=20), st.sampled_from(Direction)
)
def test_arbitrary_bytes_in_arbitrary_chunks_raise_only_our_errors(
    data: bytes, cuts: list[int], direction: Direction
) -> None:
    decoder = FrameDecoder(direction, max_frame=64, max_skip=128)
    try:
        for chunk in _chunks(data, cuts):
            event = decoder.feed(chunk)
            if event is not None:
                if isinstance(event, Frame):
                    decode_message(event)
                break
    except Kamstrup382Error:
        pass
    assert decoder.received <= len(data)


@given(st.lists(registers, min_size=1, max_size=8), st.lists(st.integers(0, 300), max_size=30))
def test_a_reply_in_any_chunks_decodes_alike(regs: list[RegisterValue], cuts: list[int]) -> None:
    reply = RegisterReply(tuple(regs))
    wire = encode_message(GetRegisterRequest((1,))) + encode_message(reply)  # with its echo
    decoder = FrameDecoder(Direction.REPLY)
    events = [decoder.feed(chunk) for chunk in _chunks(wire, cuts)]
    frames_seen = [e for e in events if e is not None]
    assert len(frames_seen) == 1
    assert events[-1] is frames_seen[0]  # the decoder is done at the chunk with the stop byte
    assert isinstance(frames_seen[0], Frame)
    assert decode_message(frames_seen[0]) == reply


@given(st.binary(max_size=300))
def test_arbitrary_captures_decode_or_raise_only_our_errors(data: bytes) -> None:
    try:
        for event in decode_capture(data):
            if isinstance(event, Frame):
                decode_message(event)
    except Kamstrup382Error:
        pass


@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_valid_start_raise_only_our_errors(tail: bytes) -> None:
    try:
        for event in decode_capture(b"\x40\x3f\x10" + tail):
            if isinstance(event, Frame):
                decode_message(event)
    except Kamstrup382Error:
        pass
