"""Every single-bit error in the specification's example, exhaustively (167 bytes x 8 bits).

What these tests prove, for the example telegram:

- 8-bit form (parity bit in bit 7): every one of the 1336 single-bit flips raises
  :class:`ParityError` naming the flipped byte, in every BCC mode.
- 7-bit form, the data block (after STX up to ETX) and the BCC byte: every flip of the 7 data bits
  is rejected, with a :class:`BccError` (a flip changes both the 7-bit sum and the XOR by a power
  of two, so neither algorithm can match), except the flip of ETX itself, after which the block has
  no end: the reply is incomplete (:class:`FramingError`). Nothing in the block is ever accepted.
- 7-bit form, bit 7 of any byte: :class:`FramingError` naming that byte.
- 7-bit form, the identification line and STX, which no BCC covers: a flip of '/', CR, LF or STX
  is a :class:`FramingError` (or, for LF, an :class:`IdentificationError`: the line runs on
  into the block and meets STX); a flip in the identification text either raises a typed
  :class:`IdentificationError` (type number out of the spec's value sets, not a letter, ...) or
  gives a telegram whose identification differs from the original while every register value
  is unchanged: such a flip cannot be detected by any check the protocol has, and the test
  shows the damage stays visible (a different identification), never in the values.
"""

from __future__ import annotations

from collections import Counter

import pytest

from kamstrup382.errors import (
    BccError,
    FramingError,
    IdentificationError,
    Kamstrup382Error,
    ParityError,
)
from kamstrup382.protocol import BccMode, add_parity, decode_reply

from .helpers import SPEC, SPEC_IDENT_LINE

ORIGINAL = decode_reply(SPEC)
STX_AT = len(SPEC_IDENT_LINE)  # 20
ETX_AT = len(SPEC) - 2  # 165
BCC_AT = len(SPEC) - 1  # 166


def flipped(data: bytes, index: int, bit: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize("mode", list(BccMode))
def test_eight_bit_form_every_flip_is_a_parity_error_at_that_byte(mode: BccMode) -> None:
    eight = add_parity(SPEC)
    for index in range(len(eight)):
        for bit in range(8):
            with pytest.raises(ParityError) as info:
                decode_reply(flipped(eight, index, bit), bcc=mode, eight_bit=True)
            assert info.value.offset == index


@pytest.mark.parametrize("mode", list(BccMode))
def test_seven_bit_form_every_flip_in_the_block_is_rejected(mode: BccMode) -> None:
    kinds: Counter[type] = Counter()
    for index in range(STX_AT + 1, len(SPEC)):
        for bit in range(7):
            bad = flipped(SPEC, index, bit)
            with pytest.raises(Kamstrup382Error) as info:
                decode_reply(bad, bcc=mode)
            kinds[type(info.value)] += 1
            if index == ETX_AT:
                assert type(info.value) is FramingError
                assert "incomplete" in str(info.value)
            else:
                assert type(info.value) is BccError
                assert info.value.offset == BCC_AT
    assert kinds == {BccError: (len(SPEC) - STX_AT - 2) * 7, FramingError: 7}


def test_seven_bit_form_bit_7_anywhere_is_a_framing_error_at_that_byte() -> None:
    for index in range(len(SPEC)):
        with pytest.raises(FramingError) as info:
            decode_reply(flipped(SPEC, index, 7))
        assert info.value.offset == index


def test_seven_bit_form_identification_and_stx_flips() -> None:
    undetected = 0
    framing_positions = {0, STX_AT - 2, STX_AT - 1, STX_AT}  # '/', CR, LF, STX
    for index in range(STX_AT + 1):
        for bit in range(7):
            bad = flipped(SPEC, index, bit)
            try:
                telegram = decode_reply(bad)
            except FramingError:
                assert index in framing_positions
                continue
            except IdentificationError as exc:
                # a text character, or LF: the line then runs on into the block (STX in it)
                assert index not in framing_positions or index == STX_AT - 1
                assert exc.offset is not None and 0 <= exc.offset <= STX_AT
                continue
            assert index not in framing_positions
            undetected += 1
            assert telegram.identification != ORIGINAL.identification
            assert telegram.registers == ORIGINAL.registers
            assert telegram.bcc_algorithm is ORIGINAL.bcc_algorithm
    # some flips turn the text into another acceptable identification ('M' -> 'E': "/KAE ...")
    assert 0 < undetected < (STX_AT + 1) * 7
