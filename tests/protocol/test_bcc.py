"""Both block check characters, against their plain definitions."""

from __future__ import annotations

from functools import reduce
from operator import xor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kamstrup382.errors import UsageError
from kamstrup382.protocol import (
    BccAlgorithm,
    BccMode,
    bcc_sum7,
    bcc_xor,
    check_bcc,
    compute_bcc,
    match_bcc,
)


def plain_sum7(block: bytes) -> int:
    return sum(block) % 128


def plain_xor(block: bytes) -> int:
    return reduce(xor, block, 0) & 0x7F


@given(st.binary(max_size=1000))
def test_bccs_equal_their_definitions(block: bytes) -> None:
    for view in (block, bytearray(block), memoryview(block)):
        assert bcc_sum7(view) == plain_sum7(block)
        assert bcc_xor(view) == plain_xor(block)


def test_long_blocks_and_bit_7() -> None:
    for size in (0, 1, 255, 256, 257, 300, 70000):
        block = b"\xff" * size
        assert bcc_sum7(block) == plain_sum7(block)
        assert bcc_xor(block) == plain_xor(block)


@given(st.binary(max_size=300), st.integers(0, 127))
def test_match_bcc_modes(block: bytes, received: int) -> None:
    s, x = plain_sum7(block), plain_xor(block)
    assert match_bcc(block, received, BccMode.SUM7) == (
        BccAlgorithm.SUM7 if received == s else None
    )
    assert match_bcc(block, received, BccMode.XOR) == (BccAlgorithm.XOR if received == x else None)
    expected = BccAlgorithm.SUM7 if received == s else BccAlgorithm.XOR if received == x else None
    assert match_bcc(block, received, BccMode.AUTO) == expected
    assert compute_bcc(block, BccAlgorithm.SUM7) == s and compute_bcc(block, BccAlgorithm.XOR) == x


@given(st.binary(max_size=300), st.integers(0, 127))
def test_check_computes_what_the_mode_allows_and_says_what_matched(
    block: bytes, received: int
) -> None:
    s, x = plain_sum7(block), plain_xor(block)
    auto = check_bcc(block, received, BccMode.AUTO)
    assert (auto.received, auto.sum7, auto.xor) == (received, s, x)
    assert auto.matches(BccAlgorithm.SUM7) == (received == s)
    assert auto.matches(BccAlgorithm.XOR) == (received == x)
    assert auto.expected(BccAlgorithm.XOR) == x
    only_sum = check_bcc(block, received, BccMode.SUM7)
    assert (only_sum.sum7, only_sum.xor) == (s, None)
    assert not only_sum.matches(BccAlgorithm.XOR)
    with pytest.raises(UsageError, match="xor BCC of this block was not computed"):
        only_sum.expected(BccAlgorithm.XOR)
    assert check_bcc(block, received, BccMode.XOR).sum7 is None
