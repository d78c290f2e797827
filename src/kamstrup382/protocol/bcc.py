"""Block check characters.

The BCC covers the bytes after STX up to and including ETX.

- ``SUM7``: Kamstrup 382: the 7-bit sum (arithmetic sum modulo 128) of those bytes. The
  specification's example telegram ends in ``>`` (0x3E), which is this sum.
- ``XOR``: IEC 62056-21 (ISO 1155 LRC): the exclusive or of those bytes.

``BccMode.AUTO`` accepts either and reports which one matched.
"""

from __future__ import annotations

import enum
from functools import reduce
from operator import xor

__all__ = ["BccAlgorithm", "BccMode", "bcc_sum7", "bcc_xor", "compute_bcc", "match_bcc"]


class BccAlgorithm(enum.StrEnum):
    SUM7 = "sum7"
    XOR = "xor"


class BccMode(enum.StrEnum):
    AUTO = "auto"
    SUM7 = "sum7"
    XOR = "xor"


def bcc_sum7(block: bytes | bytearray | memoryview) -> int:
    """Kamstrup's BCC: sum of the bytes modulo 128 (bit 7 of each byte ignored)."""
    return sum(block) & 0x7F


def bcc_xor(block: bytes | bytearray | memoryview) -> int:
    """IEC 62056-21 BCC: XOR of the bytes, bit 7 cleared."""
    return reduce(xor, block, 0) & 0x7F


_COMPUTE = {BccAlgorithm.SUM7: bcc_sum7, BccAlgorithm.XOR: bcc_xor}


def compute_bcc(block: bytes | bytearray | memoryview, algorithm: BccAlgorithm) -> int:
    return _COMPUTE[algorithm](block)


def match_bcc(
    block: bytes | bytearray | memoryview, received: int, mode: BccMode
) -> BccAlgorithm | None:
    """Return the algorithm whose BCC over ``block`` equals ``received``, or ``None``.

    In ``AUTO`` mode the sum is tried first: it is what a Kamstrup 382 sends.
    """
    if mode is not BccMode.XOR and bcc_sum7(block) == received:
        return BccAlgorithm.SUM7
    if mode is not BccMode.SUM7 and bcc_xor(block) == received:
        return BccAlgorithm.XOR
    return None
