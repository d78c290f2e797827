"""What a meter is: the settings check themselves and name the field that is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.clock import ManualClock
from kamstrup382.emulator import ConstantLoad, CsvLoad, HouseholdLoad, MeterModel, MeterSettings
from kamstrup382.errors import ConfigError
from kamstrup382.protocol import (
    KAMSTRUP_382,
    Observation,
    check_history,
    check_telegram,
    decode_reply,
)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"type_number": "685-482-OK-15"}, "type_number"),
        ({"type_number": "686-382-OK-15"}, "type_number"),
        ({"label": "1"}, "label"),
        ({"customer_number": "5404"}, "customer_number"),
        ({"customer_number": "0005404x"}, "customer_number"),
        ({"demand_period": timedelta(minutes=7)}, "demand_period"),
        ({"demand_period": timedelta(0)}, "demand_period"),
        ({"pulse_constant": 0}, "pulse_constant"),
        ({"zone": "Europe/Copenhagen"}, "zone"),
        ({"pulse_constant": 1.5}, "pulse_constant"),
        ({"energy_kwh": 10_000_000}, "energy_kwh"),
        ({"tariff_2_kwh": -1}, "tariff_2_kwh"),
        ({"hour_counter_h": Decimal("NaN")}, "hour_counter_h"),
        ({"pulse_input": -3}, "pulse_input"),
        ({"actual_peak_kw": Decimal("18.35")}, "actual_peak_kw"),
        ({"last_month_peak_kw": Decimal("1000000.0")}, "last_month_peak_kw"),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        MeterSettings(**changes)  # type: ignore[arg-type]
    assert info.value.key == key


# -- what a real meter guarantees ------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"energy_kwh": 54}, "energy_kwh", r"is not tariff_1_kwh 33 \+ tariff_2_kwh 20"),
        ({"tariff_1_kwh": Decimal("33.5")}, "energy_kwh", "sum of its tariffs"),
        ({"actual_peak_kw": Decimal("79.7")}, "actual_peak_kw", "79.695 kW a 3-phase"),
        (
            {"type_number": "685-182-OK-15", "last_month_peak_kw": Decimal("26.6")},
            "last_month_peak_kw",
            "26.565 kW a 1-phase",
        ),
    ],
)
def test_settings_keep_what_the_meter_guarantees(
    changes: dict[str, object], key: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        MeterSettings(**changes)  # type: ignore[arg-type]
    assert info.value.key == key


def test_the_sum_is_kept_modulo_the_wrap() -> None:
    MeterSettings(energy_kwh=5, tariff_1_kwh=9_999_990, tariff_2_kwh=15)
    MeterSettings(
        energy_kwh=Decimal("53.75"), tariff_1_kwh=Decimal("33.5"), tariff_2_kwh=Decimal("20.25")
    )
    MeterSettings(actual_peak_kw=Decimal("79.6"), last_month_peak_kw=Decimal("79.6"))


@st.composite
def meters(draw: st.DrawFn) -> tuple[MeterSettings, Decimal, timedelta, datetime]:
    """Valid settings, a constant load within the meter's maximum power, a time to run."""
    phases = draw(st.sampled_from([1, 2, 3]))
    limit = KAMSTRUP_382.max_power_kw(phases)
    wrap = 10**7
    quarter = st.integers(min_value=0, max_value=4 * wrap - 1).map(lambda q: Decimal(q) / 4)
    t1, t2 = draw(quarter), draw(quarter)
    t1, t2 = t1 % wrap, t2 % wrap
    tenths = st.integers(min_value=0, max_value=int(limit * 10)).map(lambda t: Decimal(t) / 10)
    settings = MeterSettings(
        type_number=f"685-{phases}82-OK-15",
        customer_number=draw(st.from_regex(r"[0-9]{8}", fullmatch=True)),
        energy_kwh=(t1 + t2) % wrap,
        tariff_1_kwh=t1,
        tariff_2_kwh=t2,
        hour_counter_h=draw(st.integers(min_value=0, max_value=wrap - 1)),
        pulse_input=draw(st.integers(min_value=0, max_value=wrap - 1)),
        actual_peak_kw=draw(tenths),
        last_month_peak_kw=draw(tenths),
        tariff_input=draw(st.booleans()),
    )
    load = draw(st.integers(min_value=0, max_value=int(limit * 1000))).__truediv__(1000)
    run = timedelta(seconds=draw(st.integers(min_value=0, max_value=70 * 86_400)))
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        seconds=draw(st.integers(min_value=0, max_value=365 * 86_400))
    )
    return settings, Decimal(str(load)), run, start


@settings(max_examples=150, deadline=None)
@given(meters())
def test_the_emulators_clean_replies_are_always_plausible(
    meter: tuple[MeterSettings, Decimal, timedelta, datetime],
) -> None:
    chosen, load, run, start = meter
    clock = ManualClock(start)
    model = MeterModel(chosen, ConstantLoad(load), clock)
    check_telegram(decode_reply(model.telegram()))
    before = model.values()
    clock.advance(run)
    telegram = decode_reply(model.telegram())
    check_telegram(telegram)
    phases = chosen.parsed_type_number.phases
    check_history(
        Observation(before, start, phases),
        Observation(telegram.meter_values(), clock.now(), phases),
    )


def test_a_load_above_the_maximum_power_is_refused() -> None:
    three = MeterSettings()
    one = MeterSettings(type_number="685-182-OK-15")
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    MeterModel(three, ConstantLoad(Decimal("79.695")), clock)
    with pytest.raises(ConfigError, match=r"up to 79\.7 kW, above the 79\.695 kW") as info:
        MeterModel(three, ConstantLoad(Decimal("79.7")), clock)
    assert info.value.key == "load"
    with pytest.raises(ConfigError, match="1-phase"):
        MeterModel(one, ConstantLoad(27), clock)
    model = MeterModel(one, ConstantLoad(1), clock)
    with pytest.raises(ConfigError, match="load"):
        model.load = ConstantLoad(30)  # swapped later: held to it too
    household = HouseholdLoad(scale=1)
    assert household.max_kw < 10
    MeterModel(one, household, clock)
    with pytest.raises(ConfigError, match="HouseholdLoad"):
        MeterModel(three, HouseholdLoad(scale=100), clock)
    rows = CsvLoad([(datetime(2026, 1, 1, tzinfo=UTC), 5), (datetime(2026, 1, 2, tzinfo=UTC), 90)])
    assert rows.max_kw == 90
    with pytest.raises(ConfigError, match="CsvLoad"):
        MeterModel(three, rows, clock)
