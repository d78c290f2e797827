"""The specification's example telegram, byte-exact: decode, BCC, encode."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kamstrup382.errors import BccError
from kamstrup382.protocol import (
    REQUEST,
    BccAlgorithm,
    BccMode,
    EndMarker,
    Identification,
    MeterValues,
    TypeNumber,
    add_parity,
    bcc_sum7,
    bcc_xor,
    decode_reply,
    encode_reply,
)

from .helpers import SPEC, SPEC_BODY, SPEC_IDENT_LINE, reply

SPEC_VALUES = MeterValues(
    customer_number="00054042",
    energy=Decimal(53),
    tariff_1=Decimal(33),
    tariff_2=Decimal(20),
    hour_counter=Decimal(482),
    pulse_input=Decimal(0),
    actual_peak=Decimal("18.3"),
    last_month_peak=Decimal("0.0"),
)
SPEC_BLOCK = SPEC_BODY.encode("ascii") + b"\x03"


def test_capture_is_the_spec_example() -> None:
    assert len(SPEC) == 167
    assert SPEC == SPEC_IDENT_LINE + b"\x02" + SPEC_BLOCK + b">"


def test_request_is_mode_a() -> None:
    assert REQUEST == b"/?!\r\n"


def test_bcc_of_the_example_is_sum7_not_xor() -> None:
    assert bcc_sum7(SPEC_BLOCK) == 0x3E == ord(">")
    assert bcc_xor(SPEC_BLOCK) == 0x12


@pytest.mark.parametrize("mode", [BccMode.SUM7, BccMode.AUTO])
def test_example_decodes_to_the_spec_table(mode: BccMode) -> None:
    telegram = decode_reply(SPEC, bcc=mode)
    assert telegram.bcc_algorithm is BccAlgorithm.SUM7
    assert telegram.bcc == 0x3E
    assert telegram.raw == SPEC
    assert telegram.data_block == SPEC_BODY
    ident = telegram.identification
    assert (ident.manufacturer, ident.baud_char, ident.text) == ("KAM", " ", "685-382-OK-15")
    assert ident.type_number == TypeNumber(3, 8, 2, "OK", "15")
    assert telegram.meter_values() == SPEC_VALUES
    registers = telegram.registers
    assert registers == SPEC_VALUES.present()
    # exact digits as printed: 18.3 and 0.0, never a float
    assert [str(v) for v in registers.values()] == [
        "00054042", "53", "33", "20", "482", "0", "18.3", "0.0"
    ]  # fmt: skip
    assert all(type(v) is Decimal for k, v in registers.items() if k != "customer_number")
    table = [(ds.address, ds.text, ds.unit, ds.name) for ds in telegram.data_sets]
    assert table == [
        ("0.0", "00054042", None, "customer_number"),
        ("1.20", "0000053", "kWh", "energy"),
        ("1.20.1", "0000033", "kWh", "tariff_1"),
        ("1.20.2", "0000020", "kWh", "tariff_2"),
        ("1.31", "0000482", "h", "hour_counter"),
        ("1.26", "0000000", None, "pulse_input"),
        ("1.6", "000018,3", "kW", "actual_peak"),
        ("1.6*1", "000000,0", "kW", "last_month_peak"),  # unit implied, not printed
    ]
    last = telegram.get("last_month_peak")
    assert last is not None and last.billing_period == 1 and last.values[0].unit is None
    assert telegram.get("1.6") == telegram.data_sets[6]
    assert telegram.get("9.9") is None


def test_example_fails_an_xor_only_check_and_says_both_values() -> None:
    with pytest.raises(BccError) as info:
        decode_reply(SPEC, bcc=BccMode.XOR)
    err = info.value
    assert (err.received, err.sum7, err.xor) == (0x3E, 0x3E, 0x12)
    assert err.offset == 166
    assert "received 0x3e" in str(err) and "xor 0x12" in str(err) and "byte 166" in str(err)


def test_corrupted_bcc_reports_both_algorithms() -> None:
    with pytest.raises(BccError) as info:
        decode_reply(SPEC[:-1] + b"?", bcc=BccMode.AUTO)
    assert (info.value.received, info.value.sum7, info.value.xor) == (0x3F, 0x3E, 0x12)
    assert "sum7 0x3e or xor 0x12" in str(info.value)


def test_xor_form_is_accepted_in_xor_and_auto_modes() -> None:
    xor_reply = reply(SPEC_BODY, bcc=BccAlgorithm.XOR)
    assert xor_reply[-1] == 0x12
    for mode in (BccMode.XOR, BccMode.AUTO):
        telegram = decode_reply(xor_reply, bcc=mode)
        assert telegram.bcc_algorithm is BccAlgorithm.XOR
        assert telegram.meter_values() == SPEC_VALUES
    with pytest.raises(BccError):
        decode_reply(xor_reply, bcc=BccMode.SUM7)


def test_encoding_the_example_values_gives_the_example_bytes() -> None:
    ident = Identification.for_type_number(TypeNumber(3, 8, 2, "OK", "15"))
    assert encode_reply(ident, SPEC_VALUES) == SPEC
    assert encode_reply(ident, SPEC_VALUES, eight_bit=True) == add_parity(SPEC)
    assert encode_reply(ident, SPEC_VALUES, bcc=BccAlgorithm.XOR)[-1] == 0x12


def test_own_line_end_marker_form() -> None:
    ident = Identification.for_type_number(TypeNumber())
    data = encode_reply(ident, SPEC_VALUES, end_marker=EndMarker.OWN_LINE)
    assert b"1.6*1(000000,0)\r\n!\r\n\x03" in data
    assert decode_reply(data).meter_values() == SPEC_VALUES


def test_eight_bit_form_decodes_to_the_same_telegram() -> None:
    eight = add_parity(SPEC)
    assert eight != SPEC  # some characters carry a parity bit
    assert decode_reply(eight, eight_bit=True) == decode_reply(SPEC)
    assert decode_reply(eight, eight_bit=True).raw == SPEC
