"""Build replies byte for byte: the emulator sends what this module makes.

``encode_reply`` for the registers of a Kamstrup 382, in the dialect its identification names
(:mod:`.dialects`), in the meter's own widths (``0000053*kWh``, ``000018,3*kW``; the 382C's
``1.078*kW``) and with its end marker at the end of the last data line;
``encode_data_block`` for any data sets (other meters, tests).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from decimal import Decimal

from kamstrup382.errors import UsageError
from kamstrup382.protocol.bcc import BccAlgorithm, compute_bcc
from kamstrup382.protocol.dataset import DataSet, DataValue
from kamstrup382.protocol.dialects import KAMSTRUP_382, Dialect, dialect_of
from kamstrup382.protocol.frame import CRLF, ETX, STX
from kamstrup382.protocol.identification import Identification
from kamstrup382.protocol.parity import add_parity
from kamstrup382.protocol.registers import Register, RegisterKind
from kamstrup382.protocol.telegram import MeterValues

__all__ = [
    "EndMarker",
    "encode_data_block",
    "encode_identification",
    "encode_reply",
    "format_register",
    "meter_data_sets",
]


class EndMarker(enum.StrEnum):
    INLINE = "inline"  # "...)!" CR LF: the Kamstrup 382
    OWN_LINE = "own_line"  # "!" CR LF on a line of its own: IEC 62056-21


def encode_identification(identification: Identification) -> bytes:
    return f"{identification}\r\n".encode("ascii")


def format_register(register: Register, value: Decimal | str) -> str:
    """The value as the meter prints it: its decimals after its decimal mark, the integer
    part in fixed width with leading zeros (or, for a register printed without them, as is)."""
    if register.kind is RegisterKind.TEXT:
        return str(value)
    if not isinstance(value, Decimal):
        raise UsageError(f"{register.name}={value!r} is not a Decimal")
    width = register.digits + (register.decimals + 1 if register.decimals else 0)
    pad = f"0{width}" if register.padded else ""
    text = f"{value:{pad}.{register.decimals}f}".replace(".", register.separator)
    if len(text) > width or (register.padded and len(text) != width):
        raise UsageError(f"{register.name}={value} does not fit {register.digits} digits")
    return text


def meter_data_sets(values: MeterValues, dialect: Dialect = KAMSTRUP_382) -> tuple[DataSet, ...]:
    """The data sets of a Kamstrup 382 data block in ``dialect``, in the meter's order;
    :class:`UsageError` if ``values`` lack one of its registers."""
    data = values.as_dict()
    missing = [reg.name for reg in dialect.registers if data[reg.name] is None]
    if missing:
        raise UsageError(f"a {dialect.name} prints {', '.join(missing)}: no value given")
    return tuple(
        DataSet(
            reg.code,
            (DataValue(format_register(reg, data[reg.name]), reg.shown_unit),),
            line,
            reg,
        )
        for line, reg in enumerate(dialect.registers, start=1)
    )


def encode_data_block(
    data_sets: Iterable[DataSet],
    *,
    bcc: BccAlgorithm = BccAlgorithm.SUM7,
    end_marker: EndMarker = EndMarker.INLINE,
) -> bytes:
    """STX, one line per data set, the end marker, ETX and the BCC."""
    lines = [ds.encode() for ds in data_sets]
    if end_marker is EndMarker.INLINE and lines:
        lines[-1] += "!"
    else:
        lines.append("!")
    block = ("\r\n".join(lines)).encode("ascii") + CRLF + bytes((ETX,))
    return bytes((STX,)) + block + bytes((compute_bcc(block, bcc),))


def encode_reply(
    identification: Identification,
    values: MeterValues,
    *,
    bcc: BccAlgorithm = BccAlgorithm.SUM7,
    end_marker: EndMarker = EndMarker.INLINE,
    eight_bit: bool = False,
) -> bytes:
    """The meter's whole reply to ``/?!`` CR LF; in 8-bit form with even-parity bits if asked."""
    data_sets = meter_data_sets(values, dialect_of(identification))
    reply = encode_identification(identification) + encode_data_block(
        data_sets, bcc=bcc, end_marker=end_marker
    )
    return add_parity(reply) if eight_bit else reply
