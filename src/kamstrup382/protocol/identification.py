"""The identification line and the Kamstrup 382 type number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import ascii_uppercase

from kamstrup382.errors import IdentificationError, TypeNumberError

__all__ = [
    "ACCURACY_CLASSES",
    "CURRENT_CODES",
    "LABELS",
    "MODULES",
    "PHASES",
    "Identification",
    "TypeNumber",
    "parse_identification",
    "parse_type_number",
]

#: Value sets from the specification: ``685-X3X2X1-Y2Y1-Z2Z1``. Y2Y1 (the module) is two capital
#: letters, Z2Z1 (the label selection) two digits.
PHASES = frozenset({1, 2, 3})
CURRENT_CODES = frozenset({1, 6, 8, 9})
ACCURACY_CLASSES = frozenset({1, 2})
MODULES = frozenset(first + second for first in ascii_uppercase for second in ascii_uppercase)
LABELS = frozenset(f"{n:02d}" for n in range(100))

_TYPE_NUMBER = re.compile(r"685-([0-9])([0-9])([0-9])-([A-Z]{2})-([0-9]{2})")
_MODULE = re.compile(r"[A-Z]{2}")
_LABEL = re.compile(r"[0-9]{2}")
_MANUFACTURER = re.compile(r"[A-Za-z]{3}")
_CONTROL = re.compile(rb"[^\x20-\x7e]")
#: The value of each ASCII digit (X3, X2, X1 are one each: a look-up costs a third of int()).
_DIGIT = {digit: value for value, digit in enumerate("0123456789")}
MAX_IDENTIFICATION_TEXT = 64
#: A well-formed line: ``/``, manufacturer, baud-rate character (not ``/`` or ``!``), text,
#: printable ASCII throughout. A line that does not match is explained by :func:`_explain`.
#: Its groups: manufacturer, baud-rate character, text, and when the text has the form of a
#: Kamstrup type number its parts X3, X2, X1, Y2Y1, Z2Z1 (whether it is one, for a ``KAM`` line,
#: is decided after the match).
_LINE = re.compile(
    r"/([A-Za-z]{3})([\x20\x22-\x2e\x30-\x7e])"
    r"(685-([0-9])([0-9])([0-9])-([A-Z]{2})-([0-9]{2})"
    rf"|[\x20-\x7e]{{1,{MAX_IDENTIFICATION_TEXT}}})"
)


@dataclass(slots=True, unsafe_hash=True)
class TypeNumber:
    """A Kamstrup 382 type number, ``685-382-OK-15`` for the specification's example.

    ``phases`` (X3), ``current_code`` (X2), ``accuracy_class`` (X1), ``module`` (Y2Y1: OK, SK,
    DK, RK, TK, MK, ...), ``label`` (Z2Z1, label selection).
    """

    phases: int = 3
    current_code: int = 8
    accuracy_class: int = 2
    module: str = "OK"
    label: str = "15"

    def __post_init__(self) -> None:
        if not (
            self.phases in PHASES
            and self.current_code in CURRENT_CODES
            and self.accuracy_class in ACCURACY_CLASSES
            and self.module in MODULES
            and self.label in LABELS
        ):
            _check_type_number(self)  # raises, naming every field that is wrong

    def __str__(self) -> str:
        return (
            f"685-{self.phases}{self.current_code}{self.accuracy_class}-{self.module}-{self.label}"
        )

    @property
    def model(self) -> str:
        """The model designation: ``685-382`` style (type 685, X3X2X1)."""
        return f"685-{self.phases}{self.current_code}{self.accuracy_class}"


def _check_type_number(tn: TypeNumber) -> None:
    problems = []
    if tn.phases not in PHASES:
        problems.append(f"phases X3={tn.phases} not in {sorted(PHASES)}")
    if tn.current_code not in CURRENT_CODES:
        problems.append(f"current code X2={tn.current_code} not in {sorted(CURRENT_CODES)}")
    if tn.accuracy_class not in ACCURACY_CLASSES:
        problems.append(f"class X1={tn.accuracy_class} not in {sorted(ACCURACY_CLASSES)}")
    if not isinstance(tn.module, str) or not _MODULE.fullmatch(tn.module):
        problems.append(f"module Y2Y1={tn.module!r} is not two capital letters")
    if not isinstance(tn.label, str) or not _LABEL.fullmatch(tn.label):
        problems.append(f"label Z2Z1={tn.label!r} is not two digits")
    if problems:
        raise TypeNumberError(f"bad type number {str(tn)!r}: " + "; ".join(problems))


def parse_type_number(text: str, *, offset: int | None = None) -> TypeNumber:
    """Decode ``685-X3X2X1-Y2Y1-Z2Z1``; raises :class:`TypeNumberError`."""
    m = _TYPE_NUMBER.fullmatch(text)
    if m is None:
        raise TypeNumberError(
            f"bad type number {text!r}: expected 685-X3X2X1-Y2Y1-Z2Z1", offset=offset
        )
    try:
        return TypeNumber(int(m[1]), int(m[2]), int(m[3]), m[4], m[5])
    except TypeNumberError as exc:  # the same problems, with the place in the stream
        raise TypeNumberError(exc.detail, offset=offset) from None


@dataclass(slots=True, unsafe_hash=True)
class Identification:
    """``/`` + manufacturer (3 letters) + baud-rate character + identification text.

    ``type_number`` is set when the manufacturer is ``KAM`` and the text is a 685 type number.
    """

    manufacturer: str
    baud_char: str
    text: str
    type_number: TypeNumber | None = None

    @classmethod
    def for_type_number(cls, type_number: TypeNumber) -> Identification:
        return cls("KAM", " ", str(type_number), type_number)

    def __str__(self) -> str:
        return f"/{self.manufacturer}{self.baud_char}{self.text}"


def parse_identification(line: bytes, *, offset: int = 0) -> Identification:
    """Parse an identification line without its CR LF (``line`` starts with ``/``).

    ``offset`` is the stream position of the ``/``, used in error messages.
    """
    match = _LINE.fullmatch(line.decode("ascii")) if line.isascii() else None
    if match is None:
        _explain(line, offset)
        raise IdentificationError(  # pragma: no cover - _explain raised
            "identification line does not parse", offset=offset
        )
    manufacturer, baud_char, ident, phases, current_code, accuracy_class, module, label = (
        match.groups()
    )
    type_number = None
    if ident.startswith("685-") and manufacturer.upper() == "KAM":
        if phases is None:  # not X3X2X1-Y2Y1-Z2Z1: the error says what was expected
            parse_type_number(ident, offset=offset + 5)
        try:
            type_number = TypeNumber(
                _DIGIT[phases], _DIGIT[current_code], _DIGIT[accuracy_class], module, label
            )
        except TypeNumberError as exc:  # the same problems, with the place in the stream
            raise TypeNumberError(exc.detail, offset=offset + 5) from None
    return Identification(manufacturer, baud_char, ident, type_number)


def _explain(line: bytes, offset: int) -> None:
    """Raise the :class:`IdentificationError` that says what is wrong with ``line``."""
    if len(line) < 6:
        raise IdentificationError(
            f"identification line {line!r} too short: need '/', 3 letters, baud character, text",
            offset=offset,
        )
    if line[0] != 0x2F:
        raise IdentificationError(
            f"identification must start with '/', got {line[:1]!r}", offset=offset
        )
    control = _CONTROL.search(line)
    if control is not None:
        raise IdentificationError(
            f"control character 0x{control[0][0]:02x} in identification line",
            offset=offset + control.start(),
        )
    text = line.decode("ascii")
    manufacturer = text[1:4]
    if not _MANUFACTURER.fullmatch(manufacturer):
        raise IdentificationError(
            f"manufacturer {manufacturer!r} is not 3 letters", offset=offset + 1
        )
    baud_char = text[4]
    if baud_char in "/!":
        raise IdentificationError(
            f"baud-rate character {baud_char!r} not allowed", offset=offset + 4
        )
    ident = text[5:]
    if len(ident) > MAX_IDENTIFICATION_TEXT:
        raise IdentificationError(
            f"identification text of {len(ident)} characters, at most {MAX_IDENTIFICATION_TEXT}",
            offset=offset + 5,
        )
