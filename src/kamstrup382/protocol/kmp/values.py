"""KMP register values: a sign/exponent byte and a big-endian mantissa, kept as ``Decimal``.

::

    sign/exponent  bit 7: the mantissa is negative
                   bit 6: the exponent is negative
                   bits 0-5: the exponent's magnitude (0-63)
    mantissa       ``length`` bytes, unsigned, big-endian

    value = (-1)^bit7 * mantissa * 10^((-1)^bit6 * exponent)

The ``Decimal`` is built from its digits and exponent directly (no arithmetic context), so it
holds exactly the meter's digits: mantissa ``12345`` with exponent ``-2`` is ``123.45``.
"""

from __future__ import annotations

from decimal import Decimal

from kamstrup382.errors import UsageError

__all__ = ["MAX_EXPONENT", "decode_value", "encode_value"]

MAX_EXPONENT = 0x3F
_SIGN = 0x80
_EXPONENT_SIGN = 0x40


def decode_value(sign_exponent: int, mantissa: bytes) -> Decimal:
    """The value a sign/exponent byte and a mantissa stand for, exactly."""
    exponent = sign_exponent & MAX_EXPONENT
    if sign_exponent & _EXPONENT_SIGN:
        exponent = -exponent
    digits = tuple(int(d) for d in str(int.from_bytes(mantissa, "big")))
    return Decimal((1 if sign_exponent & _SIGN else 0, digits, exponent))


def encode_value(value: Decimal, length: int | None = None) -> tuple[int, bytes]:
    """The sign/exponent byte and mantissa for ``value``, keeping its digits and exponent.

    ``length``: the mantissa's bytes (the shortest that holds it when ``None``, at least 1).
    A :class:`UsageError` for a value that is not finite, an exponent beyond +/-63 or a
    mantissa that does not fit ``length`` bytes.
    """
    if not value.is_finite():
        raise UsageError(f"KMP value {value} is not a finite number")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if abs(exponent) > MAX_EXPONENT:
        raise UsageError(f"KMP value {value}: exponent {exponent} beyond +/-{MAX_EXPONENT}")
    mantissa = int("".join(map(str, digits)))
    needed = max(1, (mantissa.bit_length() + 7) // 8)
    if length is None:
        length = needed
    elif not needed <= length <= 0xFF:
        raise UsageError(
            f"KMP value {value}: mantissa {mantissa} does not fit {length} bytes (needs {needed})"
        )
    byte = (_SIGN if sign else 0) | (_EXPONENT_SIGN if exponent < 0 else 0) | abs(exponent)
    return byte, mantissa.to_bytes(length, "big")
