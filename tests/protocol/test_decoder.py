"""The incremental decoder: events as soon as possible, any chunking, typed errors with offsets."""

from __future__ import annotations

import pytest

from kamstrup382.errors import BccError, FramingError, ParityError, UsageError
from kamstrup382.protocol import (
    REQUEST,
    BccMode,
    DecoderState,
    IdentificationReceived,
    TelegramDecoder,
    TelegramReceived,
    add_parity,
    decode_reply,
)
from kamstrup382.protocol.decoder import (
    DEFAULT_MAX_REPLY,
    MAX_IDENTIFICATION_LINE,
    MIN_MAX_REPLY,
)

from .helpers import SPEC, SPEC_BODY, SPEC_IDENT_LINE, bytewise, outcome, reply, split_at, whole


def test_identification_reported_as_soon_as_its_line_ends() -> None:
    decoder = TelegramDecoder()
    ident_end = len(SPEC_IDENT_LINE)
    for index, byte in enumerate(bytewise(SPEC)):
        events = decoder.feed(byte)
        assert decoder.bytes_seen == index + 1
        if index == ident_end - 1:
            assert len(events) == 1 and isinstance(events[0], IdentificationReceived)
            assert events[0].offset == 0
            assert events[0].identification.text == "685-382-OK-15"
        elif index == len(SPEC) - 1:
            assert len(events) == 1 and isinstance(events[0], TelegramReceived)
            assert events[0].bytes_seen == len(SPEC)
            assert events[0].telegram == decode_reply(SPEC)
        else:
            assert events == []
            assert decoder.telegram is None
    assert decoder.done and decoder.state is DecoderState.DONE


@pytest.mark.parametrize("eight_bit", [False, True])
def test_whole_half_and_byte_by_byte_give_the_same_telegram(eight_bit: bool) -> None:
    data = add_parity(SPEC) if eight_bit else SPEC
    results = [
        outcome(chunks, eight_bit=eight_bit)
        for chunks in (
            whole(data),
            split_at(data, [83]),
            bytewise(data),
            split_at(data, [1, 20, 21, 165, 166]),
        )
    ]
    assert all(r == results[0] for r in results)
    assert results[0][0] == "ok"


def test_noise_and_an_echoed_request_before_the_reply_are_skipped() -> None:
    data = b"\x00\xff\x7f" + REQUEST + SPEC
    decoder = TelegramDecoder()
    with pytest.raises(FramingError, match="bit 7 set"):
        decoder.feed(data)  # 0xff on a 7-bit line
    data = b"\x00zz" + REQUEST + SPEC
    decoder = TelegramDecoder()
    events = decoder.feed(data)
    first, second = events
    assert isinstance(first, IdentificationReceived) and isinstance(second, TelegramReceived)
    assert first.offset == 3 + len(REQUEST)
    assert decoder.skipped == 3 + len(REQUEST)
    assert second.bytes_seen == len(data)
    assert second.telegram.raw == SPEC
    assert second.telegram.block_offset == len(data) - len(SPEC) + len(SPEC_IDENT_LINE) + 1
    assert outcome(bytewise(data)) == outcome([data])
    assert decode_reply(data) == decode_reply(SPEC)


def test_bytes_after_the_bcc_are_counted_not_read() -> None:
    decoder = TelegramDecoder()
    events = decoder.feed(SPEC + b"xyz")
    assert decoder.trailing == 3 and decoder.bytes_seen == len(SPEC) + 3
    assert events[-1].bytes_seen == len(SPEC)  # type: ignore[union-attr]
    assert decoder.feed(b"\xff") == [] and decoder.trailing == 4
    with pytest.raises(FramingError, match="3 bytes after the BCC") as info:
        decode_reply(SPEC + b"xyz")
    assert info.value.offset == len(SPEC)


def test_bad_parity_after_the_bcc_is_trailing_however_split() -> None:
    eight = add_parity(SPEC) + b"\x01"  # 0x01 has odd parity
    assert outcome([eight], eight_bit=True) == outcome(bytewise(eight), eight_bit=True)
    assert outcome([eight], eight_bit=True)[4] == 1  # trailing


def test_first_error_in_stream_order_wins_however_split() -> None:
    # a framing error (LF without CR) at byte 18 before a bit-7 byte at byte 30
    data = bytearray(SPEC)
    data[17] = ord("x")
    data[18] = ord("\n")
    data[30] |= 0x80
    results = {outcome(chunks)[1:] for chunks in (whole(bytes(data)), bytewise(bytes(data)))}
    assert len(results) == 1
    kind, message, offset, _ = results.pop()
    assert kind is FramingError and "LF without CR" in message and offset == 18


def test_parity_error_names_the_byte() -> None:
    eight = bytearray(add_parity(SPEC))
    eight[42] ^= 0x80
    decoder = TelegramDecoder(eight_bit=True)
    decoder.feed(bytes(eight[:40]))
    with pytest.raises(ParityError) as info:
        decoder.feed(bytes(eight[40:]))
    assert info.value.offset == 42 and "byte 42" in str(info.value)
    assert decoder.state is DecoderState.FAILED
    with pytest.raises(UsageError, match="start a new one"):
        decoder.feed(b"")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "'/' never arrived"),
        (b"/KAM 685", "identification line not ended"),
        (SPEC_IDENT_LINE, "no STX"),
        (SPEC[:100], "data block not ended by ETX"),
        (SPEC[:-1], "no BCC after ETX"),
    ],
)
def test_incomplete_replies_say_what_is_missing(data: bytes, words: str) -> None:
    with pytest.raises(FramingError, match="incomplete") as info:
        decode_reply(data)
    assert words in str(info.value) and info.value.offset == len(data)


def test_stx_must_follow_the_identification_line() -> None:
    with pytest.raises(FramingError, match="expected STX") as info:
        decode_reply(SPEC_IDENT_LINE + b"0.0")
    assert info.value.offset == len(SPEC_IDENT_LINE)


def test_limits_raise_the_same_error_however_split() -> None:
    long_ident = b"/KAM " + b"x" * MAX_IDENTIFICATION_LINE + b"\r\n\x02"
    for chunks in (whole(long_ident), bytewise(long_ident)):
        result = outcome(chunks)
        assert result[1] is FramingError and "longer than" in result[2] and result[3] == 0


def _limit_outcome(chunks: list[bytes], max_reply: int) -> tuple[object, ...]:
    decoder = TelegramDecoder(max_reply=max_reply)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    except FramingError as error:
        return (type(error), str(error), error.offset)
    return ("ok", decoder.telegram is not None)


def test_a_reply_longer_than_the_limit_fails_at_the_same_byte_however_split() -> None:
    noise = b"\x00noise"
    # the specification's reply is 167 bytes: it fits 167 and not 166
    assert len(SPEC) == 167
    for chunks in (whole(SPEC), bytewise(SPEC), split_at(SPEC, [1, 80, 166])):
        assert _limit_outcome(chunks, 167) == ("ok", True)
    data = noise + SPEC
    results = {
        _limit_outcome(chunks, 166)
        for chunks in (whole(data), bytewise(data), split_at(data, [3, 90, 170]))
    }
    assert len(results) == 1
    kind, message, offset = results.pop()
    assert kind is FramingError and "longer than 166 bytes" in message
    # the last place its ETX could have been, counted in the stream (noise included)
    assert offset == len(noise) + 166 - 2


def test_the_default_limit_refuses_a_64_kib_telegram_early() -> None:
    assert SPEC in (decode_reply(SPEC).raw,)  # a real reply is far below it
    data = reply("9.9(" + "1" * 65536 + ")!\r\n")
    results = {
        _limit_outcome(chunks, DEFAULT_MAX_REPLY)
        for chunks in (whole(data), split_at(data, range(0, len(data), 1000)))
    }
    assert len(results) == 1
    kind, message, offset = results.pop()
    assert kind is FramingError and f"longer than {DEFAULT_MAX_REPLY} bytes" in message
    assert offset == DEFAULT_MAX_REPLY - 2
    with pytest.raises(FramingError, match="longer than 200 bytes"):
        decode_reply(data, max_reply=200)


@pytest.mark.parametrize("bad", [0, MIN_MAX_REPLY - 1, -5, 2.5])
def test_a_limit_too_small_to_hold_a_reply_is_a_usage_error(bad: object) -> None:
    with pytest.raises(UsageError, match="max_reply"):
        TelegramDecoder(max_reply=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pattern",
    [b"\x00\x01garbage", REQUEST, b"\r\n" + REQUEST, b"\x02" + b"1" * 50],
)
def test_endless_input_without_a_reply_keeps_the_decoder_small(pattern: bytes) -> None:
    """Noise, an endlessly echoed request (chunk edges inside the echo), never a '/'."""
    decoder = TelegramDecoder()
    stream = pattern * (997 * len(pattern))  # a whole number of patterns and of chunks
    chunks = [stream[i : i + 997] for i in range(0, len(stream), 997)]
    fed = 0
    for index in range(2000):  # about 2 MB, each chunk edge elsewhere in the pattern
        chunk = chunks[index % len(chunks)]
        decoder.feed(chunk)
        fed += len(chunk)
        assert decoder.buffered <= len(chunk) + len(REQUEST)
    assert decoder.telegram is None and decoder.skipped > fed - len(REQUEST) - 100


@pytest.mark.parametrize("mode", list(BccMode))
def test_modes_and_bcc_mode_given_as_text(mode: BccMode) -> None:
    data = reply(SPEC_BODY)
    if mode is BccMode.XOR:
        with pytest.raises(BccError):
            decode_reply(data, bcc=mode)
    else:
        assert decode_reply(data, bcc=BccMode(mode.value)).bcc == 0x3E


def test_decode_reply_accepts_bytearray_and_memoryview() -> None:
    assert decode_reply(bytearray(SPEC)) == decode_reply(memoryview(SPEC)) == decode_reply(SPEC)


def test_a_new_address_decodes_alike_whole_and_byte_by_byte() -> None:
    other = SPEC.replace(b"1.31(", b"1.31x(").replace(
        b"\x03>", b"\x03" + bytes(((0x3E + ord("x")) % 128,))
    )
    assert outcome([other]) == outcome(bytewise(other))
    assert outcome([other])[0] == "ok"  # 'x' in an address is allowed


def test_mid_block_chunks_with_a_parity_error_fail_at_that_byte() -> None:
    eight = add_parity(SPEC)
    for index in range(len(SPEC_IDENT_LINE) + 1, len(eight)):
        for bit in range(8):
            bad = bytearray(eight)
            bad[index] ^= 1 << bit
            decoder = TelegramDecoder(eight_bit=True)
            with pytest.raises(ParityError) as info:
                for start in range(0, len(bad), 3):
                    decoder.feed(bytes(bad[start : start + 3]))
            assert info.value.offset == index


def test_mid_block_chunk_with_bit_7_on_a_seven_bit_line_fails_at_that_byte() -> None:
    for index in range(len(SPEC_IDENT_LINE) + 1, len(SPEC)):
        bad = bytearray(SPEC)
        bad[index] |= 0x80
        decoder = TelegramDecoder()
        with pytest.raises(FramingError) as info:
            for start in range(len(bad)):
                decoder.feed(bytes(bad[start : start + 1]))
        assert info.value.offset == index
