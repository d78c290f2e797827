"""Data sets: ``address(value*unit)``, the lines of the data block.

General grammar accepted (IEC 62056-21 with what meters do in practice)::

    line     = data_set { data_set } [ "!" ]   |   "!"
    data_set = [ address ] group { group }
    group    = "(" value [ "*" unit ] ")"

An address may carry a billing-period suffix ``*N`` (``1.6*1``: previous period). Values are
kept as the meter printed them; a numeric value (digits with an optional decimal comma or
point) is also available exactly, as :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from operator import itemgetter

from kamstrup382.errors import FramingError
from kamstrup382.protocol.registers import REGISTER_BY_CODE, Register

__all__ = [
    "BlockLayout",
    "DataSet",
    "DataValue",
    "block_layout",
    "cached_layout",
    "check_data_block",
    "clear_layouts",
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
        if reg is not None and reg.kind == "text":
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

    The common case, a good block, is one regular-expression match; only a bad block is
    walked line by line to say what is wrong and where.
    """
    if _BLOCK.fullmatch(body) is None:
        parse_data_block(body, offset)
        raise FramingError("data block does not parse", offset=offset)  # pragma: no cover


def parse_data_block(body: str, offset: int) -> tuple[DataSet, ...]:
    """The data sets of a data block (the text between STX and ETX, ETX excluded)."""
    for index, char in enumerate(body):
        if (char < " " and char not in "\r\n") or char > "~":
            raise FramingError(
                f"control character 0x{ord(char):02x} in the data block", offset=offset + index
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
        for bad, char in enumerate(line):
            if char in "\r\n":
                raise FramingError(
                    "CR or LF alone inside a data line", offset=position + bad, line=number
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


# -- the fast path ---------------------------------------------------------------------------
#
# The grammar above never tells one digit from another: replacing every digit of a block by
# ``0`` changes no verdict and moves no group. So a block's *shape* (its bytes with the digits
# masked) decides whether it is well formed and where its addresses, values and units are.
# A meter prints the same shape on every readout (fixed widths, same registers), so the
# analysis is done once per shape with the precise parser and kept as a :class:`BlockLayout`;
# every block of that shape is then validated by one table translation and one dictionary
# look-up, and its data sets are cut out by slicing. Values themselves are never cached.

_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= c <= 0x39 else c for c in range(256))
_LAYOUTS: dict[bytes, BlockLayout] = {}
#: At most this many shapes are kept (then the cache starts afresh), and at most this many
#: address sets per shape. Only well-formed shapes are ever stored.
_LAYOUT_CACHE = 256

Span = tuple[int, int]
#: address span, value groups as (value span, unit span or None), line number
SetSpans = tuple[Span, tuple[tuple[Span, Span | None], ...], int]


def _slicer(spans: list[Span]) -> Callable[[str], tuple[str, ...]]:
    """A function cutting the given spans out of a string, in C (``itemgetter`` of slices)."""
    if not spans:
        return lambda text: ()
    if len(spans) == 1:
        only = slice(*spans[0])
        return lambda text: (text[only],)
    getter: Callable[[str], tuple[str, ...]] = itemgetter(*(slice(a, b) for a, b in spans))
    return getter


@dataclass(frozen=True, slots=True)
class _RegisterPlan:
    """Where the known registers' values are, for one set of addresses in one layout.

    Text values (the customer number, a value that is not a number) are cut as sent; numbers
    are cut from the block with its decimal commas made points and read as ``Decimal``.
    ``grouped`` names the registers texts first, numbers second; ``names`` in block order.
    """

    addresses: tuple[str, ...]
    names: tuple[str, ...]
    grouped: tuple[str, ...]
    texts: Callable[[str], tuple[str, ...]]
    numbers: Callable[[str], tuple[str, ...]]
    #: no text value holds a ',': all values can be cut in one go from the dotted block
    values: Callable[[str], tuple[str, ...]] | None
    text_count: int


@dataclass(frozen=True, slots=True)
class BlockLayout:
    """Where the data sets of every well-formed data block of one shape are."""

    sets: tuple[SetSpans, ...]
    addresses: Callable[[str], tuple[str, ...]]
    _plans: dict[tuple[str, ...], _RegisterPlan] = field(default_factory=dict, compare=False)

    def data_sets(self, body: str) -> tuple[DataSet, ...]:
        """The data sets of ``body``, a block of this layout's shape."""
        return tuple(
            DataSet(
                body[a0:a1],
                tuple(
                    DataValue(body[v0:v1], None if unit is None else body[unit[0] : unit[1]])
                    for (v0, v1), unit in groups
                ),
                line,
            )
            for (a0, a1), groups, line in self.sets
        )

    def registers(self, body: str) -> dict[str, Decimal | str]:
        """The known registers' values of ``body``, as :attr:`DataSet.value` gives them."""
        addresses = self.addresses(body)
        # one dictionary look-up: the plan found is the plan for these addresses, whatever
        # other threads do to the dictionary meanwhile (a race only computes a plan twice)
        plan = self._plans.get(addresses) or self._plan(body, addresses)
        dotted = body.replace(",", ".")
        found: Iterable[Decimal | str]
        if plan.values is not None:
            cut = plan.values(dotted)
            count = plan.text_count
            found = chain(cut[:count], map(Decimal, cut[count:]))
        else:
            found = chain(plan.texts(body), map(Decimal, plan.numbers(dotted)))
        # as many values as names by construction (a strict zip costs as much as the rest)
        values: dict[str, Decimal | str] = dict(zip(plan.grouped, found, strict=False))
        if plan.grouped != plan.names:
            return {name: values[name] for name in plan.names}
        return values

    def _plan(self, body: str, addresses: tuple[str, ...]) -> _RegisterPlan:
        chosen: dict[str, tuple[Span, bool]] = {}
        for (_, groups, _), address in zip(self.sets, addresses, strict=True):
            reg = REGISTER_BY_CODE.get(address)
            if reg is None:
                continue
            span = groups[0][0]
            numeric = reg.kind != "text" and _NUMBER.fullmatch(body[span[0] : span[1]]) is not None
            chosen[reg.name] = (span, numeric)  # a repeated address: the last one counts
        texts = [(name, span) for name, (span, numeric) in chosen.items() if not numeric]
        numbers = [(name, span) for name, (span, numeric) in chosen.items() if numeric]
        commas = any("," in body[a:b] for _, (a, b) in texts)
        plan = _RegisterPlan(
            addresses,
            tuple(chosen),
            tuple(name for name, _ in texts + numbers),
            _slicer([span for _, span in texts]),
            _slicer([span for _, span in numbers]),
            None if commas else _slicer([span for _, span in texts + numbers]),
            len(texts),
        )
        if len(self._plans) < _LAYOUT_CACHE:
            self._plans[addresses] = plan
        return plan


def clear_layouts() -> None:
    _LAYOUTS.clear()


def cached_layout(block: bytes) -> BlockLayout | None:
    """The layout of a block (bytes between STX and ETX) whose shape was validated before."""
    return _LAYOUTS.get(block.translate(_DIGITS_AS_ZERO))


def block_layout(block: bytes, body: str, offset: int) -> BlockLayout:
    """Validate a data block and return its layout; raise the exact :class:`FramingError`.

    ``block`` is the data block as bytes (between STX and ETX), ``body`` the same as text,
    ``offset`` the stream position of its first byte (for error messages).
    """
    key = block.translate(_DIGITS_AS_ZERO)
    layout = _LAYOUTS.get(key)
    if layout is not None:
        return layout
    check_data_block(body, offset)
    layout = _analyse(body)
    if len(_LAYOUTS) >= _LAYOUT_CACHE:
        _LAYOUTS.clear()
    _LAYOUTS[key] = layout
    return layout


def _analyse(body: str) -> BlockLayout:
    """The layout of a block already known to be well formed."""
    sets: list[tuple[Span, list[tuple[Span, Span | None]], int]] = []
    position = 0
    for number, text in enumerate(body.split("\r\n")[:-1], start=1):
        end = len(text) - 1 if text.endswith("!") else len(text)
        pos = 0
        first = True
        while pos < end:
            m = _GROUP.match(text, pos, end)
            assert m is not None  # the block matched _BLOCK
            unit = None if m.start(3) < 0 else (position + m.start(3), position + m.end(3))
            group = ((position + m.start(2), position + m.end(2)), unit)
            if m.end(1) > m.start(1) or first:
                sets.append(((position + m.start(1), position + m.end(1)), [group], number))
            else:
                sets[-1][1].append(group)
            first = False
            pos = m.end()
        position += len(text) + 2
    frozen = tuple((address, tuple(groups), line) for address, groups, line in sets)
    return BlockLayout(frozen, _slicer([address for address, _, _ in frozen]))
