"""The general data-set grammar, and errors that say where."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from kamstrup382.errors import FramingError, UsageError
from kamstrup382.protocol import (
    DataSet,
    DataValue,
    MeterValues,
    Telegram,
    decode_reply,
    parse_data_line,
)
from kamstrup382.protocol.dataset import parse_data_block

from .helpers import SPEC_BODY, SPEC_IDENT_LINE, bytewise, outcome, reply

BLOCK_OFFSET = len(SPEC_IDENT_LINE) + 1  # stream position of the block's first character


def sets(body: str) -> list[tuple[str, tuple[tuple[str, str | None], ...], int]]:
    telegram = decode_reply(reply(body))
    assert telegram.registers == {
        ds.name: ds.value for ds in telegram.data_sets if ds.name is not None
    }
    return [
        (ds.address, tuple((v.text, v.unit) for v in ds.values), ds.line)
        for ds in telegram.data_sets
    ]


def test_value_without_unit_and_empty_value() -> None:
    assert sets("1.26(0000000)\r\n9.9()!\r\n") == [
        ("1.26", (("0000000", None),), 1),
        ("9.9", (("", None),), 2),
    ]
    telegram = decode_reply(reply("9.9()!\r\n"))
    assert telegram.data_sets[0].value == ""  # not a number: kept as text
    assert telegram.data_sets[0].values[0].number is None


def test_several_value_groups_on_one_line() -> None:
    assert sets("1.8.0(001234.5*kWh)(000001*h)2.8.0(7)!\r\n") == [
        ("1.8.0", (("001234.5", "kWh"), ("000001", "h")), 1),
        ("2.8.0", (("7", None),), 1),
    ]


def test_decimal_point_or_comma_exact() -> None:
    telegram = decode_reply(reply("1.6(000018,3*kW)\r\n1.6*1(000012.7*kW)!\r\n"))
    assert telegram.registers == {
        "actual_peak": Decimal("18.3"),
        "last_month_peak": Decimal("12.7"),
    }
    assert str(telegram.registers["actual_peak"]) == "18.3"


def test_billing_period_suffix_and_unknown_addresses_keep_units() -> None:
    telegram = decode_reply(reply("1.6*1(000000,0)\r\n1.8.0*12(0042*MWh)\r\nC.1(ABC)!\r\n"))
    first, second, third = telegram.data_sets
    assert first.billing_period == 1 and first.name == "last_month_peak"
    assert second.billing_period == 12 and second.name is None
    assert (second.unit, second.value) == ("MWh", Decimal(42))
    assert (third.value, third.unit, third.billing_period) == ("ABC", None, None)
    assert telegram.registers == {"last_month_peak": Decimal("0.0")}


def test_end_marker_inline_or_on_its_own_line() -> None:
    inline = decode_reply(reply("0.0(00054042)\r\n1.20(0000053*kWh)!\r\n"))
    own = decode_reply(reply("0.0(00054042)\r\n1.20(0000053*kWh)\r\n!\r\n"))
    assert inline.data_sets == own.data_sets
    assert (
        inline.registers == own.registers == {"customer_number": "00054042", "energy": Decimal(53)}
    )


def test_group_without_address_starts_a_data_set() -> None:
    assert sets("(12)(34)!\r\n") == [("", (("12", None), ("34", None)), 1)]


def test_parse_data_line_reports_end_marker() -> None:
    assert parse_data_line("1.20(0000053*kWh)!", line=8, offset=0) == (
        [DataSet("1.20", (DataValue("0000053", "kWh"),), 8)],
        True,
    )
    assert parse_data_line("!", line=2, offset=0) == ([], True)


@pytest.mark.parametrize(
    ("body", "offset", "line", "words"),
    [
        ("1.20(0000053*kWh\r\n!\r\n", 0, 1, "does not parse at column 1"),
        ("1.20(1)\r\n1.31 (2)x!\r\n", 9 + 8, 2, "column 9"),
        ("1.20(1)\r\n1.31(2)x!\r\n", 9 + 7, 2, "column 8"),
        ("1.20(1)!\r\n1.31(2)!\r\n", 10, 2, "data after the end marker"),
        ("1.20(1)\r\n1.31(2)\r\n", 16, 2, "no end marker"),
        ("1.20(1)\r\n\r\n!\r\n", 9, 2, "empty data line"),
        ("1.20(1)!\r", 9, None, "must end with CR LF"),
        ("1.20(1)\n!\r\n", 7, 1, "CR or LF alone"),
        ("1.20(1\x07)!\r\n", 6, None, "control character 0x07"),
        ("", 0, None, "must end with CR LF"),
        ("\r\n", 0, 1, "empty data line"),
        ("1.20(1(2))!\r\n", 0, 1, "does not parse"),
        ("1.20(1*)!\r\n", 0, 1, "does not parse"),
        ("1.20(1/2)!\r\n", 0, 1, "does not parse"),
    ],
)
def test_bad_blocks_say_what_and_where(
    body: str, offset: int, line: int | None, words: str
) -> None:
    data = reply(body)
    with pytest.raises(FramingError) as info:
        decode_reply(data)
    err = info.value
    assert words in str(err)
    assert err.offset == BLOCK_OFFSET + offset
    assert err.line == line
    assert f"byte {BLOCK_OFFSET + offset}" in str(err)
    assert outcome(bytewise(data)) == outcome([data])  # same error byte by byte


def test_hand_built_telegram_is_checked_when_built() -> None:
    good = decode_reply(reply("1.20(0000053*kWh)!\r\n"))
    with pytest.raises(FramingError):
        Telegram(good.identification, "1.20(\u00e9)!\r\n", good.bcc_algorithm, good.bcc, good.raw)
    with pytest.raises(FramingError):
        Telegram(good.identification, "1.20(5", good.bcc_algorithm, good.bcc, good.raw)
    fine = Telegram(good.identification, "1.20(0000054*kWh)!\r\n", good.bcc_algorithm, 0, b"")
    assert fine.registers == {"energy": Decimal(54)}


#: blocks with what reading the registers must get right: text and numeric values, decimal
#: comma and point, signs, empty values, several groups per address, a repeated address (the
#: last value counts, at the first position), unknown addresses, a value of a numeric register
#: that is not a number, the end marker on its own line
BODIES = [
    SPEC_BODY,
    "1.20(0000053*kWh)(0000001*kWh)\r\nC.1(12345678)\r\n1.6(000018.3*kW)!\r\n",
    "0.0(00054042)1.31(+0000482*h)\r\n1.26()\r\n1.20(-0,5)\r\n!\r\n",
    "1.20(0000001)\r\n1.31(0000002)\r\n1.20(0000003)!\r\n",
    "1.6*1(00,0)\r\n1.20(1.0.0)\r\n1.26(7,)\r\n1.31(7*h)!\r\n",
    "(0001)(0002)\r\n1.6(12,34*kW)(56,78*kW)!\r\n",
]


@pytest.mark.parametrize("body", BODIES)
def test_registers_are_the_values_of_the_data_sets(body: str) -> None:
    expected = {ds.name: ds.value for ds in parse_data_block(body, BLOCK_OFFSET) if ds.name}
    telegram = decode_reply(reply(body))
    assert telegram.registers == expected
    assert {k: str(v) for k, v in telegram.registers.items()} == {
        k: str(v) for k, v in expected.items()
    }
    assert list(telegram.registers) == list(expected)  # same order


def test_repeated_address_keeps_its_place_and_its_last_value() -> None:
    telegram = decode_reply(reply("1.20(0000001)\r\n1.31(0000002)\r\n1.20(0000003)!\r\n"))
    assert list(telegram.registers.items()) == [
        ("energy", Decimal(3)),
        ("hour_counter", Decimal(2)),
    ]


#: blocks of all eight registers with a value the register cannot hold as printed, or can
#: only as another text: wider than its register, signed, an extra decimal, a short customer
#: number
UNFIT = [
    SPEC_BODY.replace("1.20(0000053", "1.20(00000053"),  # 8 digits, fits: 53
    SPEC_BODY.replace("1.20(0000053", "1.20(12345678"),  # 8 digits, too large
    SPEC_BODY.replace("1.20(0000053", "1.20(+000053"),  # signed
    SPEC_BODY.replace("1.6(000018,3", "1.6(00018,30"),  # two decimals, the last a zero
    SPEC_BODY.replace("1.6(000018,3", "1.6(00018,31"),  # two decimals
    SPEC_BODY.replace("0.0(00054042)", "0.0(0054042)"),  # customer number of 7 digits
]


def as_checked(make: Callable[[], MeterValues]) -> MeterValues | str:
    try:
        return make()
    except UsageError as error:
        return f"UsageError: {error}"


@pytest.mark.parametrize("body", [SPEC_BODY, *UNFIT])
def test_meter_values_are_what_the_validating_constructor_makes(body: str) -> None:
    telegram = decode_reply(reply(body))
    expected = as_checked(lambda: MeterValues(**telegram.registers))  # type: ignore[arg-type]
    assert as_checked(telegram.meter_values) == expected
    assert all(
        type(v) is Decimal
        for k, v in decode_reply(reply(SPEC_BODY)).meter_values().present().items()
        if k != "customer_number"
    )


def test_meter_values_name_a_missing_register() -> None:
    telegram = decode_reply(reply(SPEC_BODY.replace("1.26(", "1.27(")))
    with pytest.raises(UsageError, match="pulse_input"):
        telegram.meter_values()
