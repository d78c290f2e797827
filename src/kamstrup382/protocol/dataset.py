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
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

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
#
# Which registers a block holds depends on the digits of its addresses too (``1.20`` and
# ``1.31`` have one shape): the address characters, cut out of the block read as one integer
# by a bit mask, pick the layout's :class:`RegisterPlan`. A plan, and a layout's data-set
# builder, first run generic code; on their second use they are compiled to straight-line
# Python (slices with constant bounds, one ``Decimal`` per number, one dict or tuple display),
# so a meter's first reply pays no compilation and its later ones no loop.

_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= c <= 0x39 else c for c in range(256))
_LAYOUTS: dict[bytes, BlockLayout] = {}
#: At most this many shapes are kept (then the cache starts afresh), and at most this many
#: address sets per shape. Only well-formed shapes are ever stored.
_LAYOUT_CACHE = 256
#: The use of a plan or a data-set builder at which it is compiled.
_COMPILE_AT = 2
#: Blocks of more value groups than this keep the generic data-set builder (compiling costs
#: about 20 us per group, once per shape).
_COMPILE_GROUPS = 512

Span = tuple[int, int]
#: address span, value groups as (value span, unit span or None), line number
SetSpans = tuple[Span, tuple[tuple[Span, Span | None], ...], int]
Registers = dict[str, Decimal | str]

_TEXT, _NUMBER_DOT, _NUMBER_COMMA = 0, 1, 2


def _compile(source: str, name: str, namespace: dict[str, object]) -> Callable[..., object]:
    """Compile generated source (constant slices and names only) and return its function."""
    code = compile(source, f"<kamstrup382 generated {name}>", "exec")
    exec(code, namespace)
    function: Callable[..., object] = namespace[name]  # type: ignore[assignment]
    return function


class RegisterPlan:
    """Where the known registers' values are, for one layout and one set of addresses.

    ``entries``: (name, value span, kind) in the order :attr:`DataSet.value` gives them (a
    repeated address: the first position, the last value). Text values (the customer number,
    a value that is not a number) are cut as sent; numbers are read as ``Decimal``, a
    decimal comma made a point. ``read`` is the generic reader, then the compiled one.
    ``fits``: every register of a Kamstrup 382 is there, printed within its width (the
    customer number as its digits, the numbers unsigned with no more digits and decimals than
    the register has): what ``read`` gives is then a valid ``MeterValues`` as it is, for
    every block of the shape (whose digits are the only thing that differ).
    """

    __slots__ = ("entries", "fits", "read", "uses")

    def __init__(self, entries: tuple[tuple[str, Span, int], ...], *, fits: bool = False) -> None:
        self.entries = entries
        self.fits = fits
        self.uses = 0
        self.read: Callable[[str], Registers] = self._generic

    def _generic(self, body: str) -> Registers:
        self.uses += 1  # a race only compiles twice: both results are the same function
        if self.uses >= _COMPILE_AT:
            read = self.read = self._compiled()
            return read(body)
        dotted = body.replace(",", ".")
        return {
            name: body[a:b] if kind == _TEXT else Decimal(dotted[a:b])
            for name, (a, b), kind in self.entries
        }

    def _compiled(self) -> Callable[[str], Registers]:
        items = []
        for name, (a, b), kind in self.entries:
            if kind == _TEXT:
                items.append(f"{name!r}: b[{a}:{b}]")
            else:
                items.append(f"{name!r}: D({'d' if kind == _NUMBER_COMMA else 'b'}[{a}:{b}])")
        lines = ["def read(b, D=Decimal):"]
        if any(kind == _NUMBER_COMMA for _, _, kind in self.entries):
            lines.append("    d = b.replace(',', '.')")
        lines.append(f"    return {{{', '.join(items)}}}")
        function = _compile("\n".join(lines), "read", {"Decimal": Decimal})
        return function  # type: ignore[return-value]


_new = object.__new__
# the slots of the frozen data classes, set directly (what their __init__ does, without it)
_SLOT_SETTERS = {
    "_va": vars(DataSet)["address"].__set__,
    "_vv": vars(DataSet)["values"].__set__,
    "_vl": vars(DataSet)["line"].__set__,
    "_gt": vars(DataValue)["text"].__set__,
    "_gu": vars(DataValue)["unit"].__set__,
}


class BlockLayout:
    """Where the data sets of every well-formed data block of one shape are."""

    __slots__ = ("_groups", "_uses", "address_mask", "build", "plans", "sets")

    def __init__(self, sets: tuple[SetSpans, ...]) -> None:
        self.sets = sets
        mask = 0
        for (a0, a1), _, _ in sets:
            mask |= ((1 << (8 * (a1 - a0))) - 1) << (8 * a0)
        #: the bits of every address character of a block read as a little-endian integer
        self.address_mask = mask
        #: register plans by the address characters of a block (see :meth:`registers`)
        self.plans: dict[int, RegisterPlan] = {}
        self._uses = 0
        self._groups = sum(len(groups) for _, groups, _ in sets)
        #: the data sets of a block of this shape (generic code, then compiled)
        self.build: Callable[[str], tuple[DataSet, ...]] = self._generic_sets

    def data_sets(self, body: str) -> tuple[DataSet, ...]:
        """The data sets of ``body``, a block of this layout's shape."""
        return self.build(body)

    def _generic_sets(self, body: str) -> tuple[DataSet, ...]:
        self._uses += 1  # a race only compiles twice
        if self._uses >= _COMPILE_AT and self._groups <= _COMPILE_GROUPS:
            build = self.build = self._compiled_sets()
            return build(body)
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

    def _compiled_sets(self) -> Callable[[str], tuple[DataSet, ...]]:
        defaults = ", ".join(f"{name}={name}" for name in ("_new", "_DS", "_DV", *_SLOT_SETTERS))
        lines = [f"def build(b, {defaults}):"]
        for index, ((a0, a1), groups, line) in enumerate(self.sets):
            names = []
            for number, ((v0, v1), unit) in enumerate(groups):
                name = f"v{index}_{number}"
                shown = "None" if unit is None else f"b[{unit[0]}:{unit[1]}]"
                lines.append(
                    f"    {name} = _new(_DV); _gt({name}, b[{v0}:{v1}]); _gu({name}, {shown})"
                )
                names.append(name)
            lines.append(
                f"    s{index} = _new(_DS); _va(s{index}, b[{a0}:{a1}]); "
                f"_vv(s{index}, ({', '.join(names)},)); _vl(s{index}, {line})"
            )
        lines.append(f"    return ({''.join(f's{i}, ' for i in range(len(self.sets)))})")
        namespace: dict[str, object] = {"_new": _new, "_DS": DataSet, "_DV": DataValue}
        namespace.update(_SLOT_SETTERS)
        function = _compile("\n".join(lines), "build", namespace)
        return function  # type: ignore[return-value]

    def registers(self, body: str) -> Registers:
        """The known registers' values of ``body``, as :attr:`DataSet.value` gives them."""
        key = int.from_bytes(body.encode("ascii"), "little") & self.address_mask
        # one dictionary look-up: the plan found is the plan for these addresses, whatever
        # other threads do to the dictionary meanwhile (a race only computes a plan twice)
        plan = self.plans.get(key) or self.plan(body, key)
        return plan.read(body)

    def plan(self, body: str, key: int) -> RegisterPlan:
        """Make (and keep) the plan for ``body``'s addresses; ``key`` as :meth:`registers`."""
        chosen: dict[str, tuple[Span, int]] = {}
        within: dict[str, bool] = {}
        for (a0, a1), groups, _ in self.sets:
            reg = REGISTER_BY_CODE.get(body[a0:a1])
            if reg is None:
                continue
            span = groups[0][0]
            text = body[span[0] : span[1]]
            if reg.kind == "text" or _NUMBER.fullmatch(text) is None:
                kind = _TEXT
            else:
                kind = _NUMBER_COMMA if "," in text else _NUMBER_DOT
            chosen[reg.name] = (span, kind)  # a repeated address: the last one counts
            within[reg.name] = _within(reg, text, kind)
        plan = RegisterPlan(
            tuple((name, span, kind) for name, (span, kind) in chosen.items()),
            fits=len(within) == len(REGISTER_BY_CODE) and all(within.values()),
        )
        if len(self.plans) < _LAYOUT_CACHE:
            self.plans[key] = plan
        return plan


def _within(reg: Register, text: str, kind: int) -> bool:
    """Whether ``text`` (the value of ``reg`` as read as ``kind``) and every value of its
    shape is printed within the register's width (see :attr:`RegisterPlan.fits`)."""
    if reg.kind == "text":
        return kind == _TEXT and text.isdigit() and len(text) == reg.digits
    if kind == _TEXT or not text[0].isdigit():  # not a number, or signed
        return False
    whole, _, decimals = text.replace(",", ".").partition(".")
    return len(whole) <= reg.digits and len(decimals) <= reg.decimals


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
    return BlockLayout(tuple((address, tuple(groups), line) for address, groups, line in sets))
