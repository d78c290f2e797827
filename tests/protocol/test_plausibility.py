"""The plausibility rules: what a Kamstrup 382 guarantees in one telegram and between two."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.errors import ImplausibleError, ProtocolError, UsageError
from kamstrup382.protocol import (
    KAMSTRUP_382,
    BccAlgorithm,
    BccMode,
    Dialect,
    MeterValues,
    Observation,
    Telegram,
    check_history,
    check_telegram,
    decode_reply,
)
from tests.protocol.helpers import SPEC, SPEC_BODY, reply

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
VALUES = MeterValues(
    customer_number="00054042",
    energy=Decimal(53),
    tariff_1=Decimal(33),
    tariff_2=Decimal(20),
    hour_counter=Decimal(482),
    pulse_input=Decimal(0),
    actual_peak=Decimal("18.3"),
    last_month_peak=Decimal("0.0"),
)


def decoded(body: str, *, ident: bytes | None = None) -> Telegram:
    data = reply(body) if ident is None else reply(body, ident=ident)
    return decode_reply(data, bcc=BccMode.AUTO)


def refused(body: str, *, ident: bytes | None = None) -> ImplausibleError:
    telegram = decoded(body, ident=ident)
    with pytest.raises(ImplausibleError) as caught:
        check_telegram(telegram)
    return caught.value


def test_the_spec_example_is_plausible() -> None:
    check_telegram(decode_reply(SPEC))


def test_implausible_is_a_protocol_error_with_its_rule_register_and_bytes() -> None:
    error = ImplausibleError("x", rule="sum", register="1.20", raw=b"/KAM", offset=3, line=2)
    assert isinstance(error, ProtocolError)
    assert (error.kind, error.rule, error.register, error.raw) == (
        "implausible",
        "sum",
        "1.20",
        b"/KAM",
    )
    assert str(error) == "x (at byte 3, line 2)"


def test_a_doubled_and_a_dropped_character_keep_the_bcc_but_not_the_widths() -> None:
    """The issue's first example: ``1.20.2(00000200*kWh)`` with ``1.31(000482*h)``."""
    body = SPEC_BODY.replace("1.20.2(0000020*kWh)", "1.20.2(00000200*kWh)").replace(
        "1.31(0000482*h)", "1.31(000482*h)"
    )
    sent = reply(SPEC_BODY)
    damaged = reply(body)
    assert damaged[-1] == sent[-1]  # the BCC cannot see it (sum and XOR)
    assert reply(body, bcc=BccAlgorithm.XOR)[-1] == reply(SPEC_BODY, bcc=BccAlgorithm.XOR)[-1]
    telegram = decode_reply(damaged)
    assert telegram.registers["tariff_2"] == 200  # what was stored before
    error = refused(body)
    assert (error.rule, error.register) == ("width", "1.20.2")
    assert error.line == 4
    assert error.offset is not None and damaged[error.offset : error.offset + 8] == b"00000200"
    assert "1.20.2(00000200)" in str(error)


def test_two_digits_swapped_keep_the_bcc_and_the_widths_but_not_the_sum() -> None:
    """The issue's second example: ``1.20(0000035*kWh)`` for 53."""
    body = SPEC_BODY.replace("1.20(0000053*kWh)", "1.20(0000035*kWh)")
    assert reply(body)[-1] == reply(SPEC_BODY)[-1]
    error = refused(body)
    assert (error.rule, error.register) == ("sum", None)
    assert error.detail == (
        "energy 0000035 kWh is not tariff 1 0000033 kWh + tariff 2 0000020 kWh (+0/1 for rounding)"
    )
    assert error.line == 2


@pytest.mark.parametrize(
    ("energy", "t1", "t2", "plausible"),
    [
        (53, 33, 20, True),
        (54, 33, 20, True),  # each rounded down: 33.6 + 20.5 = 54.1
        (55, 33, 20, False),
        (52, 33, 20, False),
        (2, 9_999_990, 12, True),  # the sum wraps with the registers
        (3, 9_999_990, 12, True),
        (4, 9_999_990, 12, False),
        (1, 9_999_990, 12, False),
        (9_999_999, 9_999_999, 0, True),
    ],
)
def test_the_sum_rule_within_rounding_and_across_the_wrap(
    energy: int, t1: int, t2: int, plausible: bool
) -> None:
    body = (
        SPEC_BODY.replace("1.20(0000053", f"1.20({energy:07d}")
        .replace("1.20.1(0000033", f"1.20.1({t1:07d}")
        .replace("1.20.2(0000020", f"1.20.2({t2:07d}")
    )
    if plausible:
        check_telegram(decoded(body))
    else:
        assert refused(body).rule == "sum"


@pytest.mark.parametrize(
    ("old", "new", "register"),
    [
        ("0.0(00054042)", "0.0(0054042)", "0.0"),
        ("1.20(0000053*kWh)", "1.20(000053*kWh)", "1.20"),
        ("1.26(0000000)", "1.26(00000000)", "1.26"),
        ("1.6(000018,3*kW)", "1.6(00018,3*kW)", "1.6"),
        ("1.6(000018,3*kW)", "1.6(000018,30*kW)", "1.6"),
        ("1.6(000018,3*kW)", "1.6(0000183*kW)", "1.6"),
        ("1.6(000018,3*kW)", "1.6(000018.3*kW)", "1.6"),  # the 382 prints a comma
        ("1.6*1(000000,0)", "1.6*1(00000,00)", "1.6*1"),
        ("1.31(0000482*h)", "1.31(-000482*h)", "1.31"),
    ],
)
def test_every_register_has_exactly_its_printed_width(old: str, new: str, register: str) -> None:
    error = refused(SPEC_BODY.replace(old, new))
    assert (error.rule, error.register) == ("width", register)


@pytest.mark.parametrize(
    ("old", "new", "register"),
    [
        ("1.20(0000053*kWh)", "1.20(0000053*kW)", "1.20"),
        ("1.31(0000482*h)", "1.31(0000482)", "1.31"),
        ("1.26(0000000)", "1.26(0000000*kWh)", "1.26"),
    ],
)
def test_every_register_has_its_unit(old: str, new: str, register: str) -> None:
    error = refused(SPEC_BODY.replace(old, new))
    assert (error.rule, error.register) == ("unit", register)


def test_a_missing_register_is_implausible_not_a_usage_error() -> None:
    error = refused(SPEC_BODY.replace("1.26(0000000)\r\n", ""))
    assert (error.rule, error.register) == ("missing", "1.26")
    error = refused(SPEC_BODY.replace("1.26(0000000)\r\n", "").replace("1.31(0000482*h)\r\n", ""))
    assert (error.rule, error.register) == ("missing", None)
    assert "1.31, 1.26" in str(error)


def test_a_peak_above_the_meters_maximum_power() -> None:
    # 3 phases x 253 V x 105 A = 79.695 kW
    assert KAMSTRUP_382.max_power_kw(3) == Decimal("79.695")
    assert KAMSTRUP_382.max_power_kw(1) == Decimal("26.565")
    check_telegram(decoded(SPEC_BODY.replace("000018,3*kW", "000079,6*kW")))
    error = refused(SPEC_BODY.replace("000018,3*kW", "000079,7*kW"))
    assert (error.rule, error.register) == ("peak", "1.6")
    error = refused(SPEC_BODY.replace("1.6*1(000000,0)", "1.6*1(000810,0)"))
    assert (error.rule, error.register) == ("peak", "1.6*1")
    # a one-phase meter (685-182): its type number says so
    one_phase = b"/KAM 685-182-OK-15\r\n"
    check_telegram(decoded(SPEC_BODY.replace("000018,3*kW", "000026,5*kW"), ident=one_phase))
    error = refused(SPEC_BODY.replace("000018,3*kW", "000026,6*kW"), ident=one_phase)
    assert "26.565 kW a 1-phase meter" in str(error)
    # no type number: three phases
    other = b"/ISK5ME382-1000\r\n"
    check_telegram(decoded(SPEC_BODY.replace("000018,3*kW", "000079,6*kW"), ident=other))


def test_a_dialect_names_only_registers_it_has() -> None:
    with pytest.raises(UsageError, match="no register nope"):
        replace(KAMSTRUP_382, total="nope")
    assert isinstance(KAMSTRUP_382, Dialect)


# -- history ---------------------------------------------------------------------------------


def seen(at: datetime, phases: int = 3, **changes: object) -> Observation:
    return Observation(replace(VALUES, **changes), at, phases)  # type: ignore[arg-type]


def history_error(previous: Observation, current: Observation) -> ImplausibleError:
    with pytest.raises(ImplausibleError) as caught:
        check_history(previous, current)
    return caught.value


def test_an_observation_needs_an_aware_time() -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        Observation(VALUES, datetime(2026, 1, 1))
    with pytest.raises(UsageError, match="phases"):
        Observation(VALUES, T0, 0)


def test_the_same_values_later_are_plausible() -> None:
    check_history(seen(T0), seen(T0 + timedelta(minutes=15)))


def test_a_counter_never_goes_down() -> None:
    error = history_error(seen(T0), seen(T0 + timedelta(hours=1), energy=Decimal(52)))
    assert (error.rule, error.register) == ("counter_down", "1.20")
    error = history_error(
        seen(T0, pulse_input=Decimal(500)), seen(T0 + timedelta(hours=1), pulse_input=Decimal(499))
    )
    assert (error.rule, error.register) == ("counter_down", "1.26")


def test_energy_rises_at_most_at_the_maximum_power() -> None:
    # 79.695 kW for 2 h, + 1 kWh of rounding: 160.39 kWh at most
    later = T0 + timedelta(hours=2)
    check_history(seen(T0), seen(later, energy=Decimal(53 + 160), tariff_1=Decimal(33 + 160)))
    error = history_error(seen(T0), seen(later, energy=Decimal(53 + 161)))
    assert (error.rule, error.register) == ("counter_rate", "1.20")
    assert "at most 160.390 possible" in str(error)
    error = history_error(seen(T0), seen(later, tariff_2=Decimal(20 + 161)))
    assert (error.rule, error.register) == ("counter_rate", "1.20.2")
    # one phase: a third of it
    error = history_error(seen(T0, 1), seen(later, 1, energy=Decimal(53 + 60)))
    assert error.rule == "counter_rate"


def test_the_hour_counter_rises_at_most_the_hours_elapsed_plus_one() -> None:
    later = T0 + timedelta(minutes=30)
    check_history(seen(T0), seen(later, hour_counter=Decimal(483)))
    error = history_error(seen(T0), seen(later, hour_counter=Decimal(484)))
    assert (error.rule, error.register) == ("hours_rate", "1.31")
    error = history_error(seen(T0), seen(later, hour_counter=Decimal(481)))
    assert (error.rule, error.register) == ("counter_down", "1.31")


def test_counters_wrap_at_9999999() -> None:
    before = seen(
        T0, energy=Decimal(9_999_990), tariff_1=Decimal(9_999_970), hour_counter=Decimal(9_999_999)
    )
    after = seen(
        T0 + timedelta(hours=1),
        energy=Decimal(5),
        tariff_1=Decimal(9_999_985),
        hour_counter=Decimal(0),
    )
    check_history(before, after)
    # a wrap faster than the rate allows is a fall
    error = history_error(before, replace(after, at=T0 + timedelta(seconds=10)))
    assert (error.rule, error.register) == ("counter_down", "1.20")


def test_the_pulse_input_has_no_rate_but_does_not_go_down() -> None:
    later = T0 + timedelta(seconds=1)
    check_history(seen(T0), seen(later, pulse_input=Decimal(4_000_000)))
    check_history(seen(T0, pulse_input=Decimal(9_000_000)), seen(later, pulse_input=Decimal(3)))
    error = history_error(seen(T0, pulse_input=Decimal(9)), seen(later, pulse_input=Decimal(3)))
    assert error.rule == "counter_down"


def test_the_customer_number_never_changes() -> None:
    error = history_error(seen(T0), seen(T0 + timedelta(hours=1), customer_number="00054043"))
    assert (error.rule, error.register) == ("customer", "0.0")


def test_no_peak_above_the_maximum_power_in_history() -> None:
    error = history_error(seen(T0), seen(T0 + timedelta(hours=1), actual_peak=Decimal("80.0")))
    assert (error.rule, error.register) == ("peak", "1.6")


def test_peaks_change_only_across_a_month_boundary() -> None:
    mid = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    later = mid + timedelta(hours=1)
    error = history_error(seen(mid), seen(later, last_month_peak=Decimal("18.3")))
    assert (error.rule, error.register) == ("last_month_peak", "1.6*1")
    error = history_error(seen(mid), seen(later, actual_peak=Decimal("0.0")))
    assert (error.rule, error.register) == ("peak_down", "1.6")
    check_history(seen(mid), seen(later, actual_peak=Decimal("20.1")))  # a peak may rise
    # a meter 14 h ahead of UTC begins April at 10:00 UTC on 31 March
    evening = datetime(2026, 3, 31, 10, 30, tzinfo=UTC)
    month = seen(evening, actual_peak=Decimal("0.0"), last_month_peak=Decimal("18.3"))
    check_history(seen(evening - timedelta(hours=1)), month)
    # a meter 12 h behind begins April at 12:00 UTC on 1 April: still within 14 h
    check_history(
        seen(datetime(2026, 4, 1, 11, tzinfo=UTC)),
        seen(datetime(2026, 4, 1, 13, tzinfo=UTC), actual_peak=Decimal("0.0")),
    )
    # across the year
    check_history(
        seen(datetime(2026, 12, 31, 23, tzinfo=UTC)),
        seen(datetime(2027, 1, 1, 1, tzinfo=UTC), last_month_peak=Decimal("18.3")),
    )
    # the times' own zone does not matter: 1 April 01:00 in Copenhagen is 31 March 23:00 UTC
    copenhagen = timezone(timedelta(hours=2))
    check_history(
        seen(datetime(2026, 3, 20, tzinfo=UTC)),
        seen(datetime(2026, 4, 1, 1, tzinfo=copenhagen), actual_peak=Decimal("0.0")),
    )
    # 1 April 05:00 at -10 h is 15:00 UTC: 15 h into April everywhere, whatever zone the
    # times are written in
    hawaii = timezone(timedelta(hours=-10))
    error = history_error(
        seen(datetime(2026, 4, 1, 5, tzinfo=hawaii)),
        seen(datetime(2026, 4, 1, 6, tzinfo=hawaii), actual_peak=Decimal("0.0")),
    )
    assert error.rule == "peak_down"
    # 15 h after the boundary, no meter is still in the old month
    error = history_error(
        seen(datetime(2026, 4, 1, 15, tzinfo=UTC)),
        seen(datetime(2026, 4, 1, 16, tzinfo=UTC), actual_peak=Decimal("0.0")),
    )
    assert error.rule == "peak_down"


def test_a_clock_set_back_gives_no_false_alarm() -> None:
    """With no time between them, no rule that needs one is applied (see the module doc)."""
    back = T0 - timedelta(hours=3)
    moved = seen(
        back,
        energy=Decimal(53 + 500),
        tariff_1=Decimal(33 + 500),
        hour_counter=Decimal(482 + 20),
        actual_peak=Decimal("0.0"),
        last_month_peak=Decimal("18.3"),
    )
    check_history(seen(T0), moved)
    check_history(seen(T0), replace(moved, at=T0))  # the same instant
    # what needs no time still holds
    assert history_error(seen(T0), seen(back, energy=Decimal(50))).rule == "counter_down"
    assert history_error(seen(T0), seen(back, customer_number="00000001")).rule == "customer"
    assert history_error(seen(T0), seen(back, actual_peak=Decimal("99.0"))).rule == "peak"


def test_a_register_printed_twice_is_implausible() -> None:
    # the block's value would be the last one: text, no number
    error = refused(SPEC_BODY.replace("1.26(0000000)\r\n", "1.26(0000000)\r\n1.20(abc*kWh)\r\n"))
    assert (error.rule, error.register, error.line) == ("duplicate", "1.20", 7)
    # an address the meter does not print is not its concern, twice or not
    check_telegram(
        decoded(SPEC_BODY.replace("1.26(0000000)\r\n", "1.26(0000000)\r\nF.F(00)\r\nF.F(01)\r\n"))
    )


_LINES = st.sampled_from(
    [
        *SPEC_BODY.split("\r\n")[:-1],
        "1.20(0000035*kWh)",
        "1.20(x*kWh)",
        "1.6(000090,0*kW)",
        "1.6(18.3*kW)",
        "0.0()",
        "1.31(0000482*h)(7)",
        "F.F(00)",
        "1.20.1(0000033*kWh)1.20.2(0000020*kWh)",
        "(5)",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, min_size=1, max_size=12))
def test_any_decodable_telegram_is_plausible_or_implausible(lines: list[str]) -> None:
    """Whatever a decodable block holds, the check says yes or raises ImplausibleError."""
    body = "\r\n".join(line.rstrip("!") for line in lines) + "!\r\n"
    try:
        telegram = decoded(body)
    except ProtocolError:
        return
    try:
        check_telegram(telegram)
    except ImplausibleError as error:
        assert error.rule in {"missing", "width", "unit", "duplicate", "sum", "peak"}
