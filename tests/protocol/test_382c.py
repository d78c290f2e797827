"""The 382C dialect: the published readout decodes with its registers named, the dialect is
chosen from the identification, its plausibility rules and its encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.errors import ImplausibleError, UsageError
from kamstrup382.protocol import (
    KAMSTRUP_382,
    KAMSTRUP_382C,
    BccAlgorithm,
    BccMode,
    EndMarker,
    Identification,
    MeterValues,
    Observation,
    TypeNumber,
    check_history,
    check_telegram,
    decode_reply,
    dialect_named,
    dialect_of,
    encode_reply,
    parse_identification,
)
from kamstrup382.protocol.registers import (
    KAMSTRUP_382C_REGISTERS,
    KAMSTRUP_685_382_REGISTERS,
    RegisterKind,
)

from .helpers import DATA, SPEC, bytewise, outcome, reply, whole

C_EXAMPLE = (DATA / "382c-example.bin").read_bytes()
C_IDENT_LINE = b"/KAM 68438BC450000\r\n"
C_IDENT = parse_identification(C_IDENT_LINE[:-2])
C_BODY = (
    "0.0.0(14410000)\r\n"
    "1.8.0(0036886*kWh)\r\n"
    "1.8.1(0036886*kWh)\r\n"
    "1.8.2(0000000*kWh)\r\n"
    "1.8.3(0000000*kWh)\r\n"
    "1.8.4(0000000*kWh)\r\n"
    "96.8.0(0119899*h)\r\n"
    "0.128.1(0000000)\r\n"
    "1.6.0(1.078*kW)\r\n"
    "!\r\n"
)
#: What the published readout says, register by register.
C_VALUES = MeterValues(
    customer_number="14410000",
    energy=Decimal(36886),
    tariff_1=Decimal(36886),
    tariff_2=Decimal(0),
    tariff_3=Decimal(0),
    tariff_4=Decimal(0),
    hour_counter=Decimal(119899),
    pulse_input=Decimal(0),
    actual_peak=Decimal("1.078"),
    last_month_peak=None,
)


def c_reply(body: str) -> bytes:
    return reply(body, ident=C_IDENT_LINE, bcc=BccAlgorithm.XOR)


def test_the_test_file_is_the_published_text_framed() -> None:
    assert c_reply(C_BODY) == C_EXAMPLE
    assert (DATA / "382c-example.hex").read_text().strip() == C_EXAMPLE.hex()


def test_the_published_382c_readout_decodes_with_its_registers_named() -> None:
    telegram = decode_reply(C_EXAMPLE, bcc=BccMode.AUTO)
    assert telegram.dialect is KAMSTRUP_382C
    assert telegram.identification.text == "68438BC450000"
    assert telegram.identification.type_number is None
    assert telegram.meter_values() == C_VALUES
    registers = telegram.registers
    assert [(name, str(value)) for name, value in registers.items()] == [
        ("customer_number", "14410000"),
        ("energy", "36886"),
        ("tariff_1", "36886"),
        ("tariff_2", "0"),
        ("tariff_3", "0"),
        ("tariff_4", "0"),
        ("hour_counter", "119899"),
        ("pulse_input", "0"),
        ("actual_peak", "1.078"),  # three decimals, as printed
    ]
    names = [(ds.address, ds.name, ds.unit) for ds in telegram.data_sets]
    assert names[-1] == ("1.6.0", "actual_peak", "kW")
    assert names[0] == ("0.0.0", "customer_number", None)
    assert telegram.get("tariff_4") == telegram.data_sets[5]
    check_telegram(telegram)  # plausible by the 382C's rules
    fed = outcome(bytewise(C_EXAMPLE), bcc=BccMode.AUTO)
    assert fed == outcome(whole(C_EXAMPLE), bcc=BccMode.AUTO)
    assert fed[0] == "ok"


def test_the_dialect_is_chosen_from_the_identification() -> None:
    assert dialect_of(C_IDENT) is KAMSTRUP_382C
    assert dialect_of(parse_identification(b"/KAM 685-382-OK-15")) is KAMSTRUP_382
    # another manufacturer, or a text no dialect claims: the specification's 685-382
    assert dialect_of(parse_identification(b"/XYZ 68438BC450000")) is KAMSTRUP_382
    assert dialect_of(parse_identification(b"/KAM 6843")) is KAMSTRUP_382
    assert dialect_of(parse_identification(b"/kam 68438BC450000")) is KAMSTRUP_382C
    assert dialect_named("kamstrup-382c") is KAMSTRUP_382C
    with pytest.raises(UsageError, match="kamstrup-382, kamstrup-382c"):
        dialect_named("382x")


def test_a_685_382_telegram_is_still_named_by_its_own_table() -> None:
    telegram = decode_reply(SPEC)
    assert telegram.dialect is KAMSTRUP_382
    assert telegram.registers["energy"] == Decimal(53)
    values = telegram.meter_values()
    assert (values.tariff_3, values.tariff_4) == (None, None)


def test_codes_are_named_only_in_their_own_dialect() -> None:
    # the 382C's codes in a 685-382's reply (and the other way round) are unknown codes: kept
    # as data sets, never named
    mixed = C_BODY.replace("0.128.1(0000000)", "1.20(0000053*kWh)")
    telegram = decode_reply(c_reply(mixed), bcc=BccMode.AUTO)
    assert "pulse_input" not in telegram.registers
    unknown = telegram.get("1.20")
    assert unknown is not None and unknown.name is None and unknown.text == "0000053"
    spec_with_c = decode_reply(reply("0.0(00054042)\r\n1.8.0(0000053*kWh)!\r\n"), bcc=BccMode.AUTO)
    assert spec_with_c.registers == {"customer_number": "00054042"}


def test_unknown_codes_are_kept() -> None:
    body = C_BODY.replace("!\r\n", "0.9.1(123456)\r\n!\r\n")
    telegram = decode_reply(c_reply(body), bcc=BccMode.AUTO)
    extra = telegram.get("0.9.1")
    assert extra is not None and extra.name is None and extra.value == Decimal(123456)
    check_telegram(telegram)


@pytest.mark.parametrize(
    ("body", "rule", "register"),
    [
        # a tariff register shifted: the sum 1.8.1 + ... + 1.8.4 no longer gives 1.8.0
        (C_BODY.replace("1.8.1(0036886", "1.8.1(0036868"), "sum", None),
        (C_BODY.replace("1.8.3(0000000", "1.8.3(0000004"), "sum", None),
        # widths: 7 digits for the counters, 0-2 digits and 3 decimals for the peak
        (C_BODY.replace("1.8.2(0000000", "1.8.2(000000"), "width", "1.8.2"),
        (C_BODY.replace("1.6.0(1.078", "1.6.0(01.078"), "width", "1.6.0"),
        (C_BODY.replace("1.6.0(1.078", "1.6.0(1,078"), "width", "1.6.0"),
        (C_BODY.replace("1.6.0(1.078", "1.6.0(1.08"), "width", "1.6.0"),
        (C_BODY.replace("1.6.0(1.078", "1.6.0(100.078"), "width", "1.6.0"),
        (C_BODY.replace("96.8.0(0119899*h", "96.8.0(0119899*kWh"), "unit", "96.8.0"),
        (C_BODY.replace("1.8.4(0000000*kWh)\r\n", ""), "missing", "1.8.4"),
        # no more than 3 x 253 V x 105 A
        (C_BODY.replace("1.6.0(1.078", "1.6.0(80.000"), "peak", "1.6.0"),
    ],
)
def test_the_382c_rules(body: str, rule: str, register: str | None) -> None:
    telegram = decode_reply(c_reply(body), bcc=BccMode.AUTO)
    with pytest.raises(ImplausibleError) as caught:
        check_telegram(telegram)
    assert (caught.value.rule, caught.value.register) == (rule, register)


def test_four_tariffs_rounded_down_may_lag_the_total_by_three() -> None:
    body = C_BODY.replace("1.8.0(0036886", "1.8.0(0036889")
    check_telegram(decode_reply(c_reply(body), bcc=BccMode.AUTO))
    body = C_BODY.replace("1.8.0(0036886", "1.8.0(0036890")
    with pytest.raises(ImplausibleError, match=r"tariff 4 0000000 kWh \(\+0/3"):
        check_telegram(decode_reply(c_reply(body), bcc=BccMode.AUTO))


def test_a_685_382_table_is_not_a_382c() -> None:
    # the specification's reply read as a 382C: every 382C register is missing
    with pytest.raises(ImplausibleError) as caught:
        check_telegram(decode_reply(SPEC), KAMSTRUP_382C)
    assert caught.value.rule == "missing"


def test_history_of_a_382c_has_no_last_month_peak_rule() -> None:
    t0 = datetime(2026, 3, 10, 12, tzinfo=UTC)
    before = Observation(C_VALUES, t0)
    later = t0 + timedelta(hours=1)
    risen = MeterValues(**{**C_VALUES.as_dict(), "energy": 36890, "tariff_3": 4})
    check_history(before, Observation(risen, later), KAMSTRUP_382C)
    too_fast = MeterValues(**{**C_VALUES.as_dict(), "energy": 36990, "tariff_4": 104})
    with pytest.raises(ImplausibleError) as caught:
        check_history(before, Observation(too_fast, later), KAMSTRUP_382C)
    assert (caught.value.rule, caught.value.register) == ("counter_rate", "1.8.0")
    lower = MeterValues(**{**C_VALUES.as_dict(), "actual_peak": Decimal("0.500")})
    with pytest.raises(ImplausibleError) as caught:
        check_history(before, Observation(lower, later), KAMSTRUP_382C)
    assert caught.value.rule == "peak_down"
    assert "0.500 kW" in str(caught.value)


def test_values_and_encoding() -> None:
    assert encode_reply(C_IDENT, C_VALUES, bcc=BccAlgorithm.XOR, end_marker=EndMarker.OWN_LINE) == (
        C_EXAMPLE
    )
    with pytest.raises(UsageError, match="tariff_3"):
        encode_reply(C_IDENT, MeterValues())  # a 685-382's values lack tariffs 3 and 4
    with pytest.raises(UsageError, match="last_month_peak"):
        encode_reply(Identification.for_type_number(TypeNumber()), C_VALUES)
    with pytest.raises(UsageError, match="3 decimals"):
        MeterValues(actual_peak=Decimal("1.0781"))
    with pytest.raises(UsageError, match="tariff_3"):
        MeterValues(tariff_3=Decimal(-1))


def counters() -> st.SearchStrategy[Decimal]:
    return st.integers(0, 10**7 - 1).map(Decimal)


c_values = st.builds(
    MeterValues,
    customer_number=st.text("0123456789", min_size=8, max_size=8),
    energy=counters(),
    tariff_1=counters(),
    tariff_2=counters(),
    tariff_3=counters(),
    tariff_4=counters(),
    hour_counter=counters(),
    pulse_input=counters(),
    actual_peak=st.integers(0, 99_999).map(lambda n: Decimal(n).scaleb(-3)),
    last_month_peak=st.none(),
)


@settings(deadline=timedelta(seconds=5))
@given(c_values, st.sampled_from(list(BccAlgorithm)), st.sampled_from(list(EndMarker)))
def test_382c_values_round_trip(
    values: MeterValues, bcc: BccAlgorithm, end_marker: EndMarker
) -> None:
    data = encode_reply(C_IDENT, values, bcc=bcc, end_marker=end_marker)
    telegram = decode_reply(data, bcc=BccMode.AUTO)
    assert telegram.meter_values() == values
    assert {k: str(v) for k, v in telegram.registers.items()} == {
        k: str(v) for k, v in values.present().items()
    }


def test_382c_table_is_the_685_382s_under_its_codes() -> None:
    """Each 382C register is written as the 685-382's of its name (or tariff 1's, for tariffs 3
    and 4) under the 382C's code; the rows keep the values the dialect was published with."""
    fields = ("code", "name", "description", "kind", "digits", "decimals", "shown_unit", "unit")
    rows = [
        tuple(getattr(r, f) for f in (*fields, "separator", "padded"))
        for r in KAMSTRUP_382C_REGISTERS
    ]
    counter, text, gauge = RegisterKind.COUNTER, RegisterKind.TEXT, RegisterKind.GAUGE
    assert rows == [
        ("0.0.0", "customer_number", "Customer number", text, 8, 0, None, None, ",", True),
        ("1.8.0", "energy", "Energy register", counter, 7, 0, "kWh", "kWh", ",", True),
        ("1.8.1", "tariff_1", "Tariff 1", counter, 7, 0, "kWh", "kWh", ",", True),
        ("1.8.2", "tariff_2", "Tariff 2", counter, 7, 0, "kWh", "kWh", ",", True),
        ("1.8.3", "tariff_3", "Tariff 3", counter, 7, 0, "kWh", "kWh", ",", True),
        ("1.8.4", "tariff_4", "Tariff 4", counter, 7, 0, "kWh", "kWh", ",", True),
        ("96.8.0", "hour_counter", "Hour counter", counter, 7, 0, "h", "h", ",", True),
        ("0.128.1", "pulse_input", "Pulse input", counter, 7, 0, None, None, ",", True),
        ("1.6.0", "actual_peak", "Actual peak value", gauge, 2, 3, "kW", "kW", ".", False),
    ]
    by_name = {r.name: r for r in KAMSTRUP_685_382_REGISTERS}
    for register in KAMSTRUP_382C_REGISTERS:  # the descriptions, units and kinds are shared
        same = by_name.get(register.name, by_name["tariff_1"])
        assert (register.kind, register.unit) == (same.kind, same.unit)
