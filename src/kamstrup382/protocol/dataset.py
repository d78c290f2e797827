"""Data sets: ``address(value*unit)``, the lines of the data block.

General grammar accepted (IEC 62056-21 with what meters do in practice)::

    line     = data_set { data_set } [ "!" ]   |   "!"
    data_set = [ address ] group { group }
    group    = "(" value [ "*" unit ] ")"

An address may carry a billing-period suffix ``*N`` (``1.6*1``: previous period). Values are
kept as the meter printed them; a numeric value (digits with an optional decimal comma or
point) is also available exactly, as :class:`~decimal.Decimal`.

The grammar is written twice, and the tests hold the two to one another: as one regular
expression over the whole block (``_BLOCK``), which is how a block is checked, and as the walk
line by line of :func:`parse_data_block`, which builds the data sets and, for a block the
expression refuses, says what is wrong and where. The register values of a checked block are
read by one pass of ``_FIRST_GROUP`` over it (:func:`block_registers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from kamstrup382.errors import FramingError
from kamstrup382.protocol.registers import REGISTER_BY_CODE, Register, RegisterKind

__all__ = [
    "DataSet",
    "DataValue",
    "block_registers",
    "check_data_block",
    "parse_data_block",
    "parse_data_line",
]

_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
# printable ASCII only; '(' ')' '/' '!' never, '*' not in a value or a unit
_ADDRESS = r"[^\x00-\x1f\x7f-\U0010ffff()/!]*+"
_VALUE = r"[^\x00-\x1f\x7f-\U0010ffff()*/!]*+"
_UNIT = r"[^\x00-\x1f\x7f-\U0010ffff()/!*]++"
_GROUP = re.compile(rf"({_ADDRESS})\(({_VALUE})(?:\*({_UNIT}))?\)")
_BARE_GROUP = rf"{_ADDRESS}\({_VALUE}(?:\*{_UNIT})?\)"
#: A whole well-formed data block (between STX and ETX), checked in one pass.
_BLOCK = re.compile(rf"(?:(?:{_BARE_GROUP})++\r\n)*+(?:{_BARE_GROUP})*+!\r\n")
#: A group with its address, its value split: a number (``_NUMBER``) or any other text. Over a
#: checked block, its matches are the groups in order (``!`` and CR LF never begin one); the
#: first group of each data set has its address, a further group of the same set none.
_FIRST_GROUP = re.compile(rf"({_ADDRESS})\((?:([+-]?\d+(?:[.,]\d+)?)|({_VALUE}))(?:\*{_UNIT})?\)")
_CONTROL = re.compile(r"[^\x20-\x7e\r\n]")
_CR_OR_LF = re.compile(r"[\r\n]")


@dataclass(frozen=True, slots=True)
class DataValue:
    """One ``(value*unit)`` group: ``text`` as sent (``000018,3``), ``unit`` or ``None``."""

    text: str
    unit: str | None = None

    @property
    def number(self) -> Decimal | None:
        """The value as an exact number, or ``None`` when it is empty or not numeric."""
        if _NUMBER.fullmatch(self.text):
            return Decimal(self.text.replace(",", "."))
        return None


@dataclass(frozen=True, slots=True)
class DataSet:
    """An address with one or more value groups; ``line`` is its 1-based line in the block."""

    address: str
    values: tuple[DataValue, ...]
    line: int = 0

    @property
    def register(self) -> Register | None:
        return REGISTER_BY_CODE.get(self.address)

    @property
    def name(self) -> str | None:
        reg = REGISTER_BY_CODE.get(self.address)
        return reg.name if reg else None

    @property
    def text(self) -> str:
        return self.values[0].text

    @property
    def unit(self) -> str | None:
        """The unit printed, or for a known register the unit it implies."""
        shown = self.values[0].unit
        if shown is not None:
            return shown
        reg = REGISTER_BY_CODE.get(self.address)
        return reg.unit if reg else None

    @property
    def value(self) -> Decimal | str:
        """The first value: exact number for numeric registers, text otherwise.

        The customer number (``0.0``) stays text, with its leading zeros.
        """
        reg = REGISTER_BY_CODE.get(self.address)
        first = self.values[0]
        if reg is not None and reg.kind is RegisterKind.TEXT:
            return first.text
        number = first.number
        return first.text if number is None else number

    @property
    def billing_period(self) -> int | None:
        """``N`` of an ``address*N`` suffix (previous billing period), else ``None``."""
        base, star, suffix = self.address.rpartition("*")
        if star and base and suffix.isdigit():
            return int(suffix)
        return None

    def encode(self) -> str:
        groups = "".join(
            f"({v.text}*{v.unit})" if v.unit is not None else f"({v.text})" for v in self.values
        )
        return f"{self.address}{groups}"


def parse_data_line(text: str, *, line: int, offset: int) -> tuple[list[DataSet], bool]:
    """Parse one data line (without CR LF); return its data sets and whether it ended in ``!``.

    ``offset`` is the stream position of the line's first character, for error messages.
    """
    end = text.endswith("!")
    body = text[:-1] if end else text
    sets: list[DataSet] = []
    pos = 0
    length = len(body)
    match = _GROUP.match
    while pos < length:
        m = match(body, pos)
        if m is None:
            raise FramingError(
                f"data line {text!r} does not parse at column {pos + 1}: "
                "expected address(value*unit)",
                offset=offset + pos,
                line=line,
            )
        address, value, unit = m.group(1, 2, 3)
        group = DataValue(value, unit)
        if address or not sets:
            sets.append(DataSet(address, (group,), line))
        else:  # a further value group of the same address: address(v1)(v2)
            last = sets[-1]
            sets[-1] = DataSet(last.address, (*last.values, group), line)
        pos = m.end()
    if not sets and not end:
        raise FramingError("empty data line", offset=offset, line=line)
    return sets, end


def check_data_block(body: str, offset: int) -> None:
    """Raise the exact :class:`FramingError` if ``body`` (between STX and ETX) is not well formed.

    A good block is one regular-expression match; only a bad block is walked line by line,
    to say what is wrong and where.
    """
    if _BLOCK.fullmatch(body) is None:
        parse_data_block(body, offset)
        raise FramingError("data block does not parse", offset=offset)  # pragma: no cover


def block_registers(body: str) -> dict[str, Decimal | str]:
    """The known registers of a checked block (:func:`check_data_block`) by name, with the
    values :attr:`DataSet.value` gives: ``Decimal`` for a number, text for the customer number
    and for a value that is not a number. A repeated address keeps its first place and its
    last value.
    """
    registers: dict[str, Decimal | str] = {}
    for address, number, text in _FIRST_GROUP.findall(body):
        reg = REGISTER_BY_CODE.get(address)
        if reg is None:  # an unknown address, or a further group of a data set (no address)
            continue
        if not number or reg.kind is RegisterKind.TEXT:
            registers[reg.name] = number or text
        else:
            registers[reg.name] = Decimal(number.replace(",", "."))
    return registers


def parse_data_block(body: str, offset: int) -> tuple[DataSet, ...]:
    """The data sets of a data block (the text between STX and ETX, ETX excluded)."""
    control = _CONTROL.search(body)
    if control is not None:
        raise FramingError(
            f"control character 0x{ord(control[0]):02x} in the data block",
            offset=offset + control.start(),
        )
    if not body.endswith("\r\n"):
        raise FramingError("data block must end with CR LF before ETX", offset=offset + len(body))
    lines = body.split("\r\n")
    lines.pop()  # the empty string after the last CR LF
    if not lines:
        raise FramingError("empty data block: no end marker '!'", offset=offset)
    data_sets: list[DataSet] = []
    position = offset
    last = len(lines)
    for number, line in enumerate(lines, start=1):
        alone = _CR_OR_LF.search(line)
        if alone is not None:
            raise FramingError(
                "CR or LF alone inside a data line", offset=position + alone.start(), line=number
            )
        sets, end = parse_data_line(line, line=number, offset=position)
        if end and number != last:
            raise FramingError(
                "data after the end marker '!'", offset=position + len(line) + 2, line=number + 1
            )
        if number == last and not end:
            raise FramingError(
                "no end marker '!' on the last line before ETX",
                offset=position + len(line),
                line=number,
            )
        data_sets.extend(sets)
        position += len(line) + 2
    return tuple(data_sets)
