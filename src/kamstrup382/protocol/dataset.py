"""Data sets: ``address(value*unit)``, the lines of the data block.

General grammar accepted (IEC 62056-21 with what meters do in practice)::

    line     = data_set { data_set } [ "!" ]   |   "!"
    data_set = [ address ] group { group }
    group    = "(" value [ "*" unit ] ")"

An address may carry a billing-period suffix ``*N`` (``1.6*1``: previous period). Values are
kept as the meter printed them; a numeric value (digits with an optional decimal comma or
point) is also available exactly, as :class:`~decimal.Decimal`.

A block is read in one pass of one compiled regular expression: :func:`split_data_block` cuts
it at its groups, and it is well formed exactly when the groups tile it (nothing before the
first, CR LF or nothing between two, the end marker after the last). The register values
(:func:`block_registers`) and the data sets (:func:`block_data_sets`) are read from those
pieces. For a block that does not tile, the walk line by line of :func:`parse_data_block`
(the grammar written out, which the tests hold to the expression) says what is wrong and
where.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from kamstrup382.errors import FramingError
from kamstrup382.protocol.registers import REGISTER_BY_CODE, Register, RegisterKind

__all__ = [
    "DataSet",
    "DataValue",
    "block_data_sets",
    "block_groups",
    "block_registers",
    "parse_data_block",
    "parse_data_line",
    "split_data_block",
]

# The expressions take every repeat possessively and write an optional group as an alternative
# with nothing (``(?:x|)``): the same language as ``x?``, which the engine runs through its
# general repeat (about a seventh of the instructions of a block's split, docs/protocol.md).
_NUMBER_TEXT = r"[+-]?[0-9]++(?:[.,][0-9]++|)"
_NUMBER = re.compile(_NUMBER_TEXT)
# printable ASCII (0x20-0x7e) only; '(' ')' '/' '!' never, '*' not in a value or a unit
_ADDRESS = r"[\x20\x22-\x27\x2a-\x2e\x30-\x7e]*+"
_VALUE = r"[\x20\x22-\x27\x2b-\x2e\x30-\x7e]*+"
_UNIT = r"[\x20\x22-\x27\x2b-\x2e\x30-\x7e]++"
_GROUP = re.compile(rf"({_ADDRESS})\(({_VALUE})(?:\*({_UNIT})|)\)")
#: One group: address, value (a number as ``_NUMBER`` reads it, or any other text), unit. Split
#: at it, a block gives per group its separator before it and its four pieces, and at the end
#: the separator after the last group: [before, address, number, text, unit, ..., after].
_GROUP_SPLIT = re.compile(rf"({_ADDRESS})\((?:({_NUMBER_TEXT})|({_VALUE}))(?:\*({_UNIT})|)\)")
_STRIDE = 5
#: What may stand between two groups (the same line, a new line) and after the last one (the
#: end marker at the end of the line or on a line of its own).
_BETWEEN = frozenset(("", "\r\n"))
_AFTER = frozenset(("!\r\n", "\r\n!\r\n"))
_END_ONLY = "!\r\n"
_CONTROL = re.compile(r"[^\x20-\x7e\r\n]")
_CR_OR_LF = re.compile(r"[\r\n]")
#: Registers by the code a meter prints them with: one dialect's table
#: (:attr:`~kamstrup382.protocol.dialects.Dialect.by_code`); the 685-382's by default.
ByCode = Mapping[str, Register]


@dataclass(slots=True, unsafe_hash=True)
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


@dataclass(slots=True, unsafe_hash=True)
class DataSet:
    """An address with one or more value groups; ``line`` is its 1-based line in the block;
    ``register``: the register its address names in the meter's dialect, or ``None``."""

    address: str
    values: tuple[DataValue, ...]
    line: int = 0
    register: Register | None = field(default=None, compare=False)

    @property
    def name(self) -> str | None:
        reg = self.register
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
        reg = self.register
        return reg.unit if reg else None

    @property
    def value(self) -> Decimal | str:
        """The first value: exact number for numeric registers, text otherwise.

        The customer number (``0.0``) stays text, with its leading zeros.
        """
        reg = self.register
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


def parse_data_line(
    text: str, *, line: int, offset: int, by_code: ByCode = REGISTER_BY_CODE
) -> tuple[list[DataSet], bool]:
    """Parse one data line (without CR LF); return its data sets and whether it ended in ``!``.

    ``offset`` is the stream position of the line's first character, for error messages;
    ``by_code`` names the registers.
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
            sets.append(DataSet(address, (group,), line, by_code.get(address)))
        else:  # a further value group of the same address: address(v1)(v2)
            last = sets[-1]
            sets[-1] = DataSet(last.address, (*last.values, group), line, last.register)
        pos = m.end()
    if not sets and not end:
        raise FramingError("empty data line", offset=offset, line=line)
    return sets, end


#: A block cut at its groups (see ``_GROUP_SPLIT``): separators are ``str``, a piece that did
#: not take part in the match (the number or the other text, the unit) is ``None``.
Pieces = list[str | None]


def split_data_block(body: str, offset: int) -> Pieces:
    """Cut ``body`` (between STX and ETX) at its groups; raise the exact :class:`FramingError`
    if it is not well formed. ``offset``: the stream position of its first character.
    """
    pieces: Pieces = _GROUP_SPLIT.split(body)
    if len(pieces) > 1:
        good = (
            not pieces[0]
            and pieces[-1] in _AFTER
            and _BETWEEN.issuperset(pieces[_STRIDE:-1:_STRIDE])
        )
    else:  # no group at all: only the end marker on its own line
        good = body == _END_ONLY
    if not good:
        parse_data_block(body, offset)
        raise FramingError("data block does not parse", offset=offset)  # pragma: no cover
    return pieces


def block_registers(pieces: Pieces, by_code: ByCode = REGISTER_BY_CODE) -> dict[str, Decimal | str]:
    """The known registers of a block (cut by :func:`split_data_block`) by name, with the
    values :attr:`DataSet.value` gives: ``Decimal`` for a number, text for the customer number
    and for a value that is not a number. A repeated address keeps its first place and its
    last value. ``by_code``: the meter's dialect's registers.
    """
    registers: dict[str, Decimal | str] = {}
    find, text_kind = by_code.get, RegisterKind.TEXT
    for index in range(1, len(pieces) - 1, _STRIDE):  # each group's address, number, text
        register = find(pieces[index])  # type: ignore[arg-type]
        if register is None:  # an unknown address, or a further group of a data set (no address)
            continue
        number = pieces[index + 1]
        if number is None:  # not a number: the text as printed
            registers[register.name] = pieces[index + 2] or ""
        elif register.kind is text_kind:
            registers[register.name] = number
        else:
            registers[register.name] = Decimal(number.replace(",", "."))
    return registers


def block_groups(pieces: Pieces) -> list[tuple[str, str, str | None]]:
    """Each data set's first group of a block (cut by :func:`split_data_block`) that has an
    address, in order: the address, the value as printed and the unit (``None``: none printed).
    A further group of a data set (no address) is left out."""
    return [
        (address, text if number is None else number, unit)  # type: ignore[misc]
        for address, number, text, unit in zip(
            pieces[1::_STRIDE],
            pieces[2::_STRIDE],
            pieces[3::_STRIDE],
            pieces[4::_STRIDE],
            strict=True,
        )
        if address
    ]


def block_data_sets(pieces: Pieces, by_code: ByCode = REGISTER_BY_CODE) -> tuple[DataSet, ...]:
    """The data sets of a block (cut by :func:`split_data_block`), in order, with their lines
    and the registers ``by_code`` names."""
    sets: list[DataSet] = []
    line = 1
    for index in range(0, len(pieces) - 1, _STRIDE):
        before, address, number, text, unit = pieces[index : index + _STRIDE]
        if before:  # CR LF: a new line
            line += 1
        value = DataValue(text or "" if number is None else number, unit)
        if address or before or not sets:
            sets.append(DataSet(address or "", (value,), line, by_code.get(address or "")))
        else:  # a further value group of the same address: address(v1)(v2)
            last = sets[-1]
            sets[-1] = DataSet(last.address, (*last.values, value), line, last.register)
    return tuple(sets)


def parse_data_block(
    body: str, offset: int, by_code: ByCode = REGISTER_BY_CODE
) -> tuple[DataSet, ...]:
    """The data sets of a data block (the text between STX and ETX, ETX excluded), with the
    registers ``by_code`` names."""
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
        sets, end = parse_data_line(line, line=number, offset=position, by_code=by_code)
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
