"""The identification line and the Kamstrup 382 type number."""

from __future__ import annotations

import pytest

from kamstrup382.errors import FramingError, IdentificationError, TypeNumberError
from kamstrup382.protocol import TypeNumber, decode_reply, parse_identification, parse_type_number

from .helpers import SPEC_BODY, bytewise, outcome, reply


def test_spec_identification() -> None:
    ident = parse_identification(b"/KAM 685-382-OK-15")
    assert (ident.manufacturer, ident.baud_char, ident.text) == ("KAM", " ", "685-382-OK-15")
    tn = ident.type_number
    assert tn is not None
    assert (tn.phases, tn.current_code, tn.accuracy_class, tn.module, tn.label) == (
        3,
        8,
        2,
        "OK",
        "15",
    )
    assert str(tn) == "685-382-OK-15" and tn.model == "685-382"
    assert str(ident) == "/KAM 685-382-OK-15"


def test_baud_char_kept_and_other_meters_kept_as_text() -> None:
    ident = parse_identification(b"/ISk5\\2MT382-1000")
    assert (ident.manufacturer, ident.baud_char, ident.text, ident.type_number) == (
        "ISk", "5", "\\2MT382-1000", None,
    )  # fmt: skip
    other = decode_reply(reply(SPEC_BODY, ident=b"/KAM6162 Kamstrup 162\r\n"))
    assert other.identification.text == "162 Kamstrup 162"
    assert other.identification.baud_char == "6"
    assert other.identification.type_number is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("685-482-OK-15", "phases X3=4"),
        ("685-372-OK-15", "current code X2=7"),
        ("685-383-OK-15", "class X1=3"),
    ],
)
def test_bad_type_number_names_the_field(text: str, field: str) -> None:
    with pytest.raises(TypeNumberError) as info:
        parse_type_number(text, offset=5)
    assert field in str(info.value) and info.value.offset == 5
    data = reply(SPEC_BODY, ident=f"/KAM {text}\r\n".encode())
    with pytest.raises(TypeNumberError) as info2:
        decode_reply(data)
    assert field in str(info2.value) and "byte 5" in str(info2.value)
    assert outcome(bytewise(data)) == outcome([data])


@pytest.mark.parametrize(
    "text", ["685-382-ok-15", "685-382-OK-1", "685-38-OK-15", "685-382-OK-15x"]
)
def test_malformed_type_number(text: str) -> None:
    with pytest.raises(TypeNumberError, match="685-X3X2X1-Y2Y1-Z2Z1"):
        parse_type_number(text)


def test_type_number_value_object_checks_itself() -> None:
    assert TypeNumber(1, 1, 1, "MK", "00") == parse_type_number("685-111-MK-00")
    with pytest.raises(TypeNumberError, match="module"):
        TypeNumber(module="O1")
    with pytest.raises(TypeNumberError, match="label"):  # two ASCII digits, not any Unicode digit
        TypeNumber(label="\u0661\u0665")
    with pytest.raises(TypeNumberError, match="685-X3X2X1-Y2Y1-Z2Z1"):
        parse_type_number("685-\u0663\u0668\u0662-OK-15")


@pytest.mark.parametrize(
    ("line", "offset", "words"),
    [
        (b"/KA", 0, "too short"),
        (b"/K1M 685", 1, "manufacturer"),
        (b"/KAM!685", 4, "baud-rate character"),
        (b"/KAM \x07685", 5, "control character 0x07"),
        (b"/KAM " + b"x" * 65, 5, "at most 64"),
    ],
)
def test_bad_identification_lines(line: bytes, offset: int, words: str) -> None:
    with pytest.raises(IdentificationError) as info:
        parse_identification(line, offset=10)
    assert words in str(info.value) and info.value.offset == 10 + offset


def test_identification_line_needs_cr_lf() -> None:
    with pytest.raises(FramingError, match="LF without CR"):
        decode_reply(b"/KAM 685-382-OK-15\n\x02")
