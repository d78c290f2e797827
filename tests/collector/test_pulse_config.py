"""A meter's pulse keys: parsed into its PulseSettings; each bad value names its key."""

from __future__ import annotations

from typing import Any

import pytest

from kamstrup382.collector.config import parse_config
from kamstrup382.errors import ConfigError
from kamstrup382.pulses.live import PulseSettings


def meter(**keys: Any) -> dict[str, Any]:
    return {"meters": [{"name": "house", "port": "socket://127.0.0.1:4001", **keys}]}


def test_the_pulse_keys_make_the_meters_pulse_settings() -> None:
    config = parse_config(
        meter(
            pulses="gpio:/dev/gpiochip0:17",
            pulse_constant=500,
            pulse_max_power=20000,
            pulse_zero_after="2m",
            power_interval="10s",
            power_change=0.5,
        ),
        env={},
    )
    assert config.meters[0].pulses == PulseSettings(
        "gpio:/dev/gpiochip0:17", 500, 20000.0, 120.0, 10.0, 0.5
    )
    plain = parse_config(meter(pulses="tcp://127.0.0.1:9000"), env={}).meters[0].pulses
    assert plain == PulseSettings("tcp://127.0.0.1:9000")
    assert parse_config(meter(), env={}).meters[0].pulses is None


@pytest.mark.parametrize(
    ("keys", "key", "words"),
    [
        ({"pulses": "udp://h:1"}, "pulses", "expected tcp://HOST:PORT or gpio:CHIP:LINE"),
        ({"pulses": "gpio:/dev/gpiochip0"}, "pulses", "gpio:CHIP:LINE"),
        ({"pulses": "tcp://h"}, "pulses", "tcp://HOST:PORT"),
        ({"pulses": 17}, "pulses", ""),
        ({"pulse_constant": 1000}, "pulse_constant", "needs pulses"),
        ({"power_interval": "5s"}, "power_interval", "needs pulses"),
        ({"pulses": "tcp://h:1", "pulse_constant": 0}, "pulse_constant", "between 1"),
        ({"pulses": "tcp://h:1", "pulse_max_power": -5}, "pulse_max_power", "above 0"),
        ({"pulses": "tcp://h:1", "pulse_max_power": "lots"}, "pulse_max_power", "a number"),
        ({"pulses": "tcp://h:1", "pulse_zero_after": 0}, "pulse_zero_after", "> 0"),
        ({"pulses": "tcp://h:1", "power_change": 0}, "power_change", "above 0"),
        ({"pulses": "tcp://h:1", "power_interval": -1}, "power_interval", ">= 0"),
    ],
)
def test_a_bad_pulse_key_is_named(keys: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(meter(**keys), env={})
    assert caught.value.key == f"meters[0].{key}"
    assert words in str(caught.value)
