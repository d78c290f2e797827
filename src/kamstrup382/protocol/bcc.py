"""Block check characters.

The BCC covers the bytes after STX up to and including ETX.

- ``SUM7``: Kamstrup 382: the 7-bit sum (arithmetic sum modulo 128) of those bytes. The
  specification's example telegram ends in ``>`` (0x3E), which is this sum.
- ``XOR``: IEC 62056-21 (ISO 1155 LRC): the exclusive or of those bytes.

``BccMode.AUTO`` accepts either and reports which one matched. :func:`check_bcc` gives the
whole verdict on one block (:class:`BccCheck`): what was received and what each algorithm the
mode allows computes, so that a reader can ask which algorithms matched without computing
them again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import reduce
from operator import xor

from kamstrup382.errors import UsageError

__all__ = [
    "BccAlgorithm",
    "BccCheck",
    "BccMode",
    "bcc_sum7",
    "bcc_xor",
    "check_bcc",
    "compute_bcc",
    "match_bcc",
]

Block = bytes | bytearray | memoryview


class BccAlgorithm(enum.StrEnum):
    SUM7 = "sum7"
    XOR = "xor"


class BccMode(enum.StrEnum):
    AUTO = "auto"
    SUM7 = "sum7"
    XOR = "xor"


def bcc_sum7(block: Block) -> int:
    """Kamstrup's BCC: the sum of the bytes modulo 128 (bit 7 of a byte adds 128: ignored)."""
    return sum(block) & 0x7F


def bcc_xor(block: Block) -> int:
    """IEC 62056-21 BCC: the exclusive or of the bytes, bit 7 cleared."""
    return reduce(xor, block, 0) & 0x7F


def compute_bcc(block: Block, algorithm: BccAlgorithm) -> int:
    if algorithm is BccAlgorithm.SUM7:
        return bcc_sum7(block)
    return bcc_xor(block)


@dataclass(slots=True, unsafe_hash=True)
class BccCheck:
    """The check of one block: the BCC ``received`` and what each algorithm computes over the
    block (``None``: the mode the block was checked in does not allow that algorithm, so it
    was not computed; ``AUTO`` computes both).
    """

    received: int
    sum7: int | None = None
    xor: int | None = None

    def expected(self, algorithm: BccAlgorithm) -> int:
        """The BCC ``algorithm`` computes over the block; :class:`UsageError` if not computed."""
        value = self.sum7 if algorithm is BccAlgorithm.SUM7 else self.xor
        if value is None:
            raise UsageError(f"the {algorithm.value} BCC of this block was not computed")
        return value

    def matches(self, algorithm: BccAlgorithm) -> bool:
        """Whether ``algorithm`` was computed and equals the BCC received."""
        value = self.sum7 if algorithm is BccAlgorithm.SUM7 else self.xor
        return value == self.received

    @property
    def matched(self) -> BccAlgorithm | None:
        """The algorithm that matched, the sum first (what a Kamstrup 382 sends); or ``None``."""
        if self.sum7 == self.received:
            return BccAlgorithm.SUM7
        if self.xor == self.received:
            return BccAlgorithm.XOR
        return None


def check_bcc(block: Block, received: int, mode: BccMode) -> BccCheck:
    """Compute the BCC of each algorithm ``mode`` allows over ``block``."""
    if mode is BccMode.SUM7:
        return BccCheck(received, bcc_sum7(block))
    if mode is BccMode.XOR:
        return BccCheck(received, None, bcc_xor(block))
    return BccCheck(received, bcc_sum7(block), bcc_xor(block))


def match_bcc(block: Block, received: int, mode: BccMode) -> BccAlgorithm | None:
    """Return the algorithm whose BCC over ``block`` equals ``received``, or ``None``.

    In ``AUTO`` mode the sum is tried first: it is what a Kamstrup 382 sends.
    """
    return check_bcc(block, received, mode).matched
