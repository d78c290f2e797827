"""Even parity for the 7E1 line carried in 8-bit bytes.

A TCP gateway or an 8N1 optical head delivers each 7E1 character as one byte whose bit 7 is
the even-parity bit. Readers set it on what they send and check and strip it on what they
receive.
"""

from __future__ import annotations

__all__ = ["add_parity", "first_parity_error", "strip_parity"]


def _with_parity(char: int) -> int:
    return char | 0x80 if bin(char).count("1") % 2 else char


_ADD_TABLE = bytes(_with_parity(c & 0x7F) for c in range(256))
_STRIP_TABLE = bytes(c & 0x7F for c in range(256))
_VALID = bytes(_with_parity(c) for c in range(128))


def add_parity(data: bytes) -> bytes:
    """Set bit 7 of every byte so that it carries even parity (bit 7 of the input is ignored)."""
    return data.translate(_ADD_TABLE)


def strip_parity(data: bytes) -> bytes:
    """Clear bit 7 of every byte, without checking it."""
    return data.translate(_STRIP_TABLE)


def first_parity_error(data: bytes | bytearray) -> int | None:
    """Index of the first byte in ``data`` without even parity, or ``None`` if all are good."""
    if not data.translate(None, _VALID):
        return None
    for index, byte in enumerate(data):
        if bin(byte).count("1") % 2:
            return index
    raise AssertionError("unreachable: translate found a bad byte")  # pragma: no cover
