"""Block check characters.

The BCC covers the bytes after STX up to and including ETX.

- ``SUM7``: Kamstrup 382: the 7-bit sum (arithmetic sum modulo 128) of those bytes. The
  specification's example telegram ends in ``>`` (0x3E), which is this sum.
- ``XOR``: IEC 62056-21 (ISO 1155 LRC): the exclusive or of those bytes.

``BccMode.AUTO`` accepts either and reports which one matched.
"""

from __future__ import annotations

import enum
from zlib import adler32

__all__ = ["BccAlgorithm", "BccMode", "bcc_sum7", "bcc_xor", "compute_bcc", "match_bcc"]


class BccAlgorithm(enum.StrEnum):
    SUM7 = "sum7"
    XOR = "xor"


class BccMode(enum.StrEnum):
    AUTO = "auto"
    SUM7 = "sum7"
    XOR = "xor"


#: Adler-32's first half is 1 + the byte sum modulo 65521: exact while the sum stays below
#: 65520, which any block of at most 256 bytes guarantees (256 * 255 = 65280).
_ADLER_EXACT = 256


def bcc_sum7(block: bytes | bytearray | memoryview) -> int:
    """Kamstrup's BCC: sum of the bytes modulo 128 (bit 7 of each byte ignored).

    Bit 7 of a byte adds 128 to the sum, which is 0 modulo 128: it is ignored for free.
    """
    if len(block) <= _ADLER_EXACT:
        return ((adler32(block) & 0xFFFF) - 1) & 0x7F
    return sum(block) & 0x7F


def bcc_xor(block: bytes | bytearray | memoryview) -> int:
    """IEC 62056-21 BCC: XOR of the bytes, bit 7 cleared.

    The bytes are read as one integer and folded in halves (XOR is associative), which
    takes a handful of big-integer operations instead of one Python step per byte.
    """
    value = int.from_bytes(block, "little")
    width = len(block)
    while width > 1:
        half = (width + 1) // 2
        bits = half * 8
        value = (value & ((1 << bits) - 1)) ^ (value >> bits)
        width = half
    return value & 0x7F


_COMPUTE = {BccAlgorithm.SUM7: bcc_sum7, BccAlgorithm.XOR: bcc_xor}
# members as module constants (an Enum member read as a class attribute is a descriptor call)
_SUM7, _XOR = BccAlgorithm.SUM7, BccAlgorithm.XOR
_MODE_SUM7, _MODE_XOR = BccMode.SUM7, BccMode.XOR


def compute_bcc(block: bytes | bytearray | memoryview, algorithm: BccAlgorithm) -> int:
    return _COMPUTE[algorithm](block)


def match_bcc(
    block: bytes | bytearray | memoryview, received: int, mode: BccMode
) -> BccAlgorithm | None:
    """Return the algorithm whose BCC over ``block`` equals ``received``, or ``None``.

    In ``AUTO`` mode the sum is tried first: it is what a Kamstrup 382 sends.
    """
    if mode is not _MODE_XOR and bcc_sum7(block) == received:
        return _SUM7
    if mode is not _MODE_SUM7 and bcc_xor(block) == received:
        return _XOR
    return None
