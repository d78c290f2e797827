"""What a meter is: the settings check themselves and name the field that is wrong."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from kamstrup382.emulator import MeterSettings
from kamstrup382.errors import ConfigError


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
