"""What a 382's KMP registers guarantee: units converted exactly or refused, nothing
negative, the high-resolution energy agreeing with the whole one, counters that only rise at
a bounded rate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kamstrup382.errors import ImplausibleError
from kamstrup382.protocol.kmp import RegisterValue, convert
from kamstrup382.protocol.kmp.plausibility import MAX_POWER_KW, check_kmp_history, kmp_values

WH, KWH, GJ, W, KW, V, A = 1, 2, 8, 21, 22, 33, 34


def value(register: int, unit: int, text: str) -> RegisterValue:
    return RegisterValue.of(register, unit, Decimal(text))


def test_units_of_the_same_quantity_are_converted_exactly() -> None:
    values = kmp_values(
        [
            value(0x0001, WH, "1500"),
            value(0x03FF, KW, "2.4"),
            value(0x041E, V, "231"),
            value(0x0434, A, "4.19"),
        ]
    )
    assert values == {
        "energy": Decimal("1.500"),
        "power": Decimal(2400),
        "voltage_l1": Decimal(231),
        "current_l1": Decimal("4.19"),
    }
    assert str(values["energy"]) == "1.500"  # the meter's digits, no float on the way
    assert str(values["power"]) == "2400"  # written out, not 2.4E+3


def test_a_unit_of_another_quantity_is_refused_with_the_register() -> None:
    with pytest.raises(ImplausibleError) as caught:
        kmp_values([value(0x0001, GJ, "12")])
    assert caught.value.rule == "unit"
    assert caught.value.register == "0x0001"
    assert "GJ" in str(caught.value) and "kWh" in str(caught.value)


def test_a_negative_value_is_refused() -> None:
    with pytest.raises(ImplausibleError) as caught:
        kmp_values([value(0x0438, W, "-5")])
    assert (caught.value.rule, caught.value.register) == ("negative", "0x0438")


@pytest.mark.parametrize(("hires", "ok"), [("53.99", True), ("53.00", True), ("54.00", False)])
def test_high_resolution_energy_agrees_with_the_whole_register(hires: str, ok: bool) -> None:
    registers = [value(0x0001, KWH, "53"), value(0x000D, KWH, hires)]
    if ok:
        assert kmp_values(registers)["energy_hires"] == Decimal(hires)
    else:
        with pytest.raises(ImplausibleError) as caught:
            kmp_values(registers)
        assert (caught.value.rule, caught.value.register) == ("hires", "0x000d")


def test_registers_outside_the_382_table_are_left_out() -> None:
    assert kmp_values([value(0x7777, KWH, "1"), value(0x0001, KWH, "2")]) == {"energy": Decimal(2)}


def test_a_counter_never_goes_down() -> None:
    with pytest.raises(ImplausibleError) as caught:
        check_kmp_history({"energy": Decimal(53)}, {"energy": Decimal(52)}, 900)
    assert (caught.value.rule, caught.value.register) == ("counter_down", "0x0001")


def test_a_counter_rises_at_most_as_fast_as_the_maximum_power() -> None:
    quarter = MAX_POWER_KW / 4  # kWh in 900 s at the most
    check_kmp_history({"energy": Decimal(0)}, {"energy": quarter + 1}, 900)
    with pytest.raises(ImplausibleError) as caught:
        check_kmp_history({"energy": Decimal(0)}, {"energy": quarter + 2}, 900)
    assert caught.value.rule == "counter_rate"


def test_gauges_and_missing_registers_are_not_bounded_between_readings() -> None:
    check_kmp_history(
        {"power": Decimal(9000), "energy": Decimal(1)},
        {"power": Decimal(0), "voltage_l1": Decimal(230)},
        10,
    )


def test_convert_refuses_what_is_not_the_same_quantity() -> None:
    assert convert(Decimal(1), "kWh", "W") is None
    assert convert(Decimal(1), "", "kWh") is None
    assert convert(Decimal("0.5"), "MWh", "kWh") == Decimal(500)
