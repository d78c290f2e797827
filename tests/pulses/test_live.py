"""LiveMeter: the decay on our clock, when a report is due, the precise energy never falling,
the drift judged against the register's rounding, pulses after a readout counted after it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kamstrup382.errors import UsageError
from kamstrup382.pulses.estimate import NS
from kamstrup382.pulses.live import LiveMeter, PulseSettings

SOURCE = "tcp://127.0.0.1:9"


def feed(live: LiveMeter, times_s: list[float], *, offset: int = 10**12) -> None:
    """Pulses at ``times_s`` on the source's clock, arriving at once on ours (+ ``offset``)."""
    for t in times_s:
        ns = int(t * NS)
        live.pulse(ns, 1, mono_ns=ns + offset, wall_ns=ns)


def test_the_power_decays_on_our_clock_whatever_the_source_clock() -> None:
    live = LiveMeter("house", PulseSettings(SOURCE, zero_after=60))
    feed(live, [0.0, 1.5])  # 2.4 kW
    arrived = int(1.5 * NS) + 10**12
    assert live.power(arrived).watts == pytest.approx(2400)
    assert live.power(arrived + 3 * NS).watts == pytest.approx(1200)  # 3 s of silence: bound
    assert live.power(arrived + 3 * NS).bounded
    assert live.power(arrived + 61 * NS).watts == 0


def test_a_report_is_due_every_interval_and_at_once_on_a_large_change() -> None:
    live = LiveMeter("house", PulseSettings(SOURCE, power_interval=5, power_change=0.2))
    assert not live.update(0).report  # nothing known yet
    feed(live, [0.0, 1.5], offset=0)
    now = int(1.5 * NS)
    assert live.update(now).report  # the first figure
    feed(live, [3.0], offset=0)  # the same power: not again before 5 s
    assert not live.update(int(3.0 * NS)).report
    feed(live, [4.4], offset=0)  # 1.4 s: 2571 W, +7 %: not a large change
    assert not live.update(int(4.4 * NS)).report
    feed(live, [5.0], offset=0)  # 0.6 s: 6 kW: at once
    update = live.update(int(5.0 * NS))
    assert update.report and update.watts == pytest.approx(6000)
    feed(live, [5.6, 6.2, 6.8, 7.4, 8.0, 8.6, 9.2, 9.8], offset=0)
    assert not live.update(int(9.8 * NS)).report  # the same figure within 5 s of the last
    feed(live, [10.4], offset=0)
    assert live.update(int(10.4 * NS)).report  # 5.4 s since the last report


def test_the_precise_energy_never_falls_and_the_drift_is_judged() -> None:
    live = LiveMeter("house", PulseSettings(SOURCE))
    assert live.readout(Decimal(100), 0) is None
    feed(live, [float(i) for i in range(1, 1801)])  # 1.8 kWh counted ...
    assert live.update(1).energy_kwh == Decimal("101.8")
    resync = live.readout(Decimal(100), 1801 * NS)  # ... for a register that did not move
    assert resync is not None and resync.drift == Decimal("1.8")
    assert live.drift_beyond_rounding(resync)
    assert live.update(2).energy_kwh == Decimal("101.8")  # held, not 100.999
    good = live.readout(Decimal(101), 1802 * NS)
    assert good is not None and not live.drift_beyond_rounding(good)


def test_pulses_after_the_register_was_read_count_after_it() -> None:
    live = LiveMeter("house", PulseSettings(SOURCE))
    live.readout(Decimal(10), 0)
    feed(live, [float(i) for i in range(1, 501)])  # 0.5 kWh, the last 100 after the readout
    resync = live.readout(Decimal(10), int(400.5 * NS))
    assert resync is not None and resync.pulses == 400
    assert live.estimate.since_resync == 100
    assert live.update(1).energy_kwh == Decimal("10.5")


def test_type_number_gives_the_glitch_limit_unless_set() -> None:
    free = LiveMeter("a", PulseSettings(SOURCE))
    free.readout(Decimal(1), 0, max_power_w=10_000)
    assert free.estimate.min_interval_ns == int(3600 / 10_000 * NS)
    fixed = LiveMeter("b", PulseSettings(SOURCE, max_power_w=20_000))
    fixed.readout(Decimal(1), 0, max_power_w=10_000)
    assert fixed.estimate.min_interval_ns == int(3600 / 20_000 * NS)


def test_bad_report_settings() -> None:
    with pytest.raises(UsageError):
        PulseSettings(SOURCE, power_change=0)
    with pytest.raises(UsageError):
        PulseSettings(SOURCE, power_interval=-1)


def test_whole_minutes_of_pulses_with_silent_ones_as_zero() -> None:
    live = LiveMeter("house", PulseSettings(SOURCE))
    minute = 60 * NS
    # the first minute is partial (counting began in it): not given
    feed(live, [30.0, 45.0])
    # minute 1: 2.4 kW steady, 40 pulses, 1.5 s apart
    feed(live, [60.0 + 1.5 * i for i in range(40)])
    # minute 2: silent; minute 3: one pulse
    feed(live, [190.0])
    figures = live.minutes(4 * minute)
    assert [(m.start_ns // minute, m.pulses) for m in figures] == [(1, 40), (2, 0), (3, 1)]
    first = figures[0]
    assert first.mean_w == pytest.approx(2400.0)
    assert first.min_w == pytest.approx(240.0)  # its first pulse: 15 s after the last
    assert first.max_w == pytest.approx(2400.0)
    assert figures[1].min_w is None and figures[1].mean_w == 0.0
    assert live.minutes(4 * minute) == []  # taken
    assert [m.pulses for m in live.minutes(6 * minute)] == [0, 0]  # minutes 4 and 5, silent
