"""The power estimate: exact at a steady load, bounded in silence, deaf to glitches."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.errors import UsageError
from kamstrup382.pulses import PowerEstimate
from kamstrup382.pulses.estimate import NS


def steady(watts: float, pulses: int, constant: int = 1000, start: int = 0) -> list[int]:
    interval = 3.6e6 / constant / watts  # seconds
    return [start + round(i * interval * NS) for i in range(pulses)]


@pytest.mark.parametrize("watts", [100.0, 1000.0, 2400.0, 5000.0, 20000.0])
def test_a_steady_load(watts: float) -> None:
    estimate = PowerEstimate(1000)
    times = steady(watts, 5)
    for t in times:
        assert estimate.pulse(t)
    power = estimate.power(times[-1])
    assert power.watts == pytest.approx(watts, rel=1e-6)
    assert not power.bounded
    assert power.pulses == 5


def test_one_pulse_tells_no_power_until_silence_says_zero() -> None:
    estimate = PowerEstimate(1000)
    assert estimate.power(0).watts is None
    estimate.pulse(10 * NS)
    assert estimate.power(11 * NS).watts is None
    assert estimate.power(10 * NS + 360 * NS).watts == 0.0  # 1 pulse in 360 s: 10 W


def test_silence_bounds_then_zeroes() -> None:
    estimate = PowerEstimate(1000)
    for t in steady(3600.0, 3):  # a pulse a second
        estimate.pulse(t)
    last = steady(3600.0, 3)[-1]
    assert estimate.power(last + NS // 2).watts == pytest.approx(3600.0)
    decayed = estimate.power(last + 4 * NS)
    assert decayed.bounded
    assert decayed.watts == pytest.approx(900.0)  # at most one pulse in 4 s
    assert estimate.power(last + 360 * NS).watts == 0.0


def test_a_load_step_shows_at_the_second_pulse() -> None:
    estimate = PowerEstimate(1000)
    times = steady(1000.0, 4)
    for t in times:
        estimate.pulse(t)
    step = steady(5000.0, 3, start=times[-1])
    for t in step[1:]:
        estimate.pulse(t)
    assert estimate.power(step[-1]).watts == pytest.approx(5000.0, rel=1e-6)


def test_glitches_are_rejected_and_counted() -> None:
    estimate = PowerEstimate(1000, max_power_w=10_000)  # at most a pulse per 0.36 s
    estimate.pulse(0)
    estimate.pulse(NS)
    assert not estimate.pulse(NS + NS // 100)  # 10 ms later: 360 kW
    assert not estimate.pulse(NS // 2)  # before the last one
    assert (estimate.pulses, estimate.rejected) == (2, 2)
    assert estimate.power(NS).watts == pytest.approx(3600.0)


def test_energy_between_readouts_and_the_drift() -> None:
    estimate = PowerEstimate(1000)
    assert estimate.energy_kwh() is None
    assert estimate.resync(Decimal(1234)) is None
    for t in steady(3600.0, 1500):
        estimate.pulse(t)
    assert estimate.energy_kwh() == Decimal("1235.5")
    good = estimate.resync(Decimal(1235))  # the register rounds down
    assert good is not None
    assert (good.increase, good.pulses, good.drift) == (Decimal(1), 1500, Decimal("0.5"))
    assert estimate.energy_kwh() == Decimal("1235.5")  # the fraction is kept: 1235 <= e < 1236
    missing = estimate.resync(Decimal(1240))  # 5 kWh and no pulse: a module that misses them
    assert missing is not None and missing.drift == Decimal(-5)
    assert estimate.energy_kwh() == Decimal(1240)  # moved up to the register
    for t in steady(3600.0, 1800):
        estimate.pulse(t + 10**15)
    over = estimate.resync(Decimal(1240))  # 1.8 kWh counted, under 1 kWh true: kept below 1241
    assert over is not None and over.drift == Decimal("1.8")
    assert estimate.energy_kwh() == Decimal("1240.999")


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=3)),
        max_size=30,
    )
)
def test_energy_after_a_readout_lies_within_its_register(steps: list[tuple[int, int]]) -> None:
    estimate = PowerEstimate(1000)
    register = Decimal(100)
    estimate.resync(register)
    t = 0
    for pulses, kwh in steps:
        for _ in range(pulses):
            t += NS
            estimate.pulse(t)
        register += kwh
        estimate.resync(register)
        energy = estimate.energy_kwh()
        assert energy is not None and register <= energy < register + 1


def test_bad_settings_are_usage_errors() -> None:
    for kwargs in ({"constant": 0}, {"max_power_w": 0}, {"zero_after": -1}):
        with pytest.raises(UsageError):
            PowerEstimate(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        PowerEstimate().pulse(0, count=0)


gaps = st.lists(st.integers(min_value=1, max_value=600 * NS), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    gaps=gaps,
    asks=st.lists(st.integers(min_value=-600 * NS, max_value=1200 * NS), max_size=20),
    constant=st.sampled_from([1, 100, 1000, 10000]),
)
def test_never_above_the_bound_whatever_the_jitter_and_the_asks(
    gaps: list[int], asks: list[int], constant: int
) -> None:
    estimate = PowerEstimate(constant)
    t = 0
    estimate.pulse(t)
    for gap in gaps:
        t += gap
        estimate.pulse(t)
    last = estimate.last_pulse_ns
    assert last is not None
    per_pulse = 3.6e6 / constant
    before = (estimate.pulses, estimate.rejected)
    for offset in asks:
        at = last + offset
        power = estimate.power(at)
        assert power == estimate.power(at)  # asking changes nothing
        if power.watts is None:
            continue
        assert power.watts >= 0
        if offset > 0:  # never more than one pulse in the silence since the last
            assert power.watts <= per_pulse * NS / offset * (1 + 1e-9)
        if estimate.interval_ns is not None:
            assert power.watts <= per_pulse * NS / estimate.interval_ns * (1 + 1e-9)
    assert (estimate.pulses, estimate.rejected) == before
    assert estimate.pulses + estimate.rejected == len(gaps) + 1
