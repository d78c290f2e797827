"""Live pulse out (module pin 3): pulses reach subscribers at their instants, with nobody
reading the meter, and a subscriber computes live power between readouts."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from fractions import Fraction

import pytest

from kamstrup382.clock import ManualClock, ScaledClock
from kamstrup382.emulator import ConstantLoad, Emulator, EmulatorThread, MeterModel, MeterSettings
from kamstrup382.emulator.load import US_PER_HOUR
from kamstrup382.errors import UsageError
from kamstrup382.protocol import decode_reply, strip_parity
from tests.fixtures.emulator import FAST, START, RawLine, wait_for

US = timedelta(microseconds=1)


class LatchedClock(ScaledClock):
    """A scaled clock that shows ``start`` until :meth:`go`, then runs ``factor`` times real
    time: the model is created at a known instant, and time then flows on its own until
    :meth:`halt` stops it where it is (so that two readings of the model see one instant)."""

    def __init__(self, start: datetime, factor: float) -> None:
        super().__init__(start, factor)
        self._went: float | None = None
        self._halted: datetime | None = None

    def go(self) -> None:
        self._went = time.monotonic()

    def halt(self) -> None:
        self._halted = self.now()

    def now(self) -> datetime:
        if self._halted is not None:
            return self._halted
        if self._went is None:
            return self.start
        return self.start + timedelta(seconds=(time.monotonic() - self._went) * self.factor)


def pulse_instant(start: datetime, kw: Fraction, constant: int, n: int) -> datetime:
    """The first microsecond at which ``kw`` from ``start`` has used ``n / constant`` kWh."""
    return start + math.ceil(Fraction(n, constant) * US_PER_HOUR / kw) * US


class Recorder:
    """A subscriber: each event with the running total and the clock when it was heard."""

    def __init__(self, clock: LatchedClock | ManualClock) -> None:
        self.clock = clock
        self.events: list[tuple[int, datetime, int, datetime]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, count: int, at: datetime) -> None:
        with self._lock:
            total = (self.events[-1][2] if self.events else 0) + count
            self.events.append((count, at, total, self.clock.now()))
            self.threads.add(threading.current_thread().name)

    @property
    def total(self) -> int:
        with self._lock:
            return self.events[-1][2] if self.events else 0


def test_live_pulses_arrive_at_their_instants_without_readouts() -> None:
    kw, constant = Fraction(7), 1000  # a pulse every 514285.71... us: rounding matters
    clock = LatchedClock(START, 360.0)
    model = MeterModel(MeterSettings(pulse_constant=constant), ConstantLoad(7), clock)
    heard = Recorder(clock)
    with EmulatorThread([model], speed=FAST, delay=0.02) as emu:
        unsubscribe = emu.subscribe_pulses(0, heard)
        clock.go()
        wait_for(lambda: heard.total >= 300)
        unsubscribe()
        assert emu.log(0) == []  # nobody read the meter: the pulses came by themselves
    assert heard.threads == {"k382-emulator"}
    for count, at, total, heard_at in heard.events:
        assert count >= 1
        assert at == pulse_instant(START, kw, constant, total)  # the model's exact instant
        assert at <= heard_at  # never before the pulse happened
    # count == energy x constant, at the last pulse and at the model's now (one instant)
    clock.halt()
    count, last, total, _ = heard.events[-1]
    assert total == math.floor(kw * Fraction((last - START) // US, US_PER_HOUR) * constant)
    assert model.pulses_out == math.floor(model.consumed_kwh * constant) >= total


def test_pulses_follow_a_manual_clock_and_stop_with_the_last_subscriber() -> None:
    clock = ManualClock(START)
    model = MeterModel(MeterSettings(pulse_constant=500), ConstantLoad(2), clock)
    first, second = Recorder(clock), Recorder(clock)
    with EmulatorThread([model], speed=FAST, delay=0.02) as emu:
        stop_first = emu.subscribe_pulses(0, first)
        stop_second = emu.subscribe_pulses(0, second)
        clock.advance(timedelta(hours=1))
        wait_for(lambda: first.total == second.total == 1000)  # 2 kWh x 500 imp/kWh
        assert first.events[-1][1] == START + timedelta(hours=1)
        stop_first()
        clock.advance(timedelta(minutes=30))
        wait_for(lambda: second.total == 1500)
        stop_second()
        stop_second()  # twice is harmless
        clock.advance(timedelta(hours=1))
        with RawLine(emu.ports[0]) as line:  # a readout advances the model: nobody hears
            line.send()
            values = decode_reply(strip_parity(line.read_reply())).meter_values()
    assert values.energy == 58  # 53 + 2 kW x 2.5 h
    assert (first.total, second.total) == (1000, 1500)
    assert model.pulses_out == 2500


def more_than(heard: Recorder, total: int) -> Callable[[], bool]:
    return lambda: heard.total >= total


def test_live_power_between_readouts_matches_the_load() -> None:
    kw, constant = Fraction(5, 2), 1000  # a pulse every 1.44 s of virtual time
    clock = LatchedClock(START, 600.0)
    model = MeterModel(MeterSettings(pulse_constant=constant), ConstantLoad(kw), clock)
    heard = Recorder(clock)
    emu = EmulatorThread([model], speed=FAST, delay=0.02)
    emu.subscribe_pulses(0, heard)  # before start: delivered from the first pulse on
    with emu:
        clock.go()
        with RawLine(emu.ports[0]) as line:
            for _ in range(3):
                line.send()
                line.read_reply()
                wait_for(more_than(heard, heard.total + 20))
        readouts = [r.requested_at for r in emu.log(0)]
    assert len(readouts) == 3
    # the registers hardly move between readouts (whole kWh); the pulses give the power
    for begin, end in itertools.pairwise(readouts):
        inside = [(count, at) for count, at, _, _ in heard.events if begin < at <= end]
        assert len(inside) >= 2
        energy = Fraction(sum(count for count, _ in inside[1:]), constant)
        elapsed_us = (inside[-1][1] - inside[0][1]) // US
        power = energy * US_PER_HOUR / elapsed_us
        # each instant is the exact crossing rounded up to the microsecond: < 1 us off each
        resolution = energy * US_PER_HOUR / (elapsed_us - 1) - energy * US_PER_HOUR / elapsed_us
        assert abs(power - kw) <= resolution
    assert heard.events[0][2] == heard.events[0][0]  # the first event counts from pulse 1
    assert heard.events[0][1] == pulse_instant(START, kw, constant, heard.events[0][0])


def test_a_failing_subscriber_does_not_stop_the_others_or_the_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(START)
    model = MeterModel(MeterSettings(pulse_constant=10), ConstantLoad(1), clock)
    heard = Recorder(clock)

    def broken(count: int, at: datetime) -> None:
        raise RuntimeError("subscriber bug")

    with caplog.at_level(logging.ERROR), EmulatorThread([model], speed=FAST, delay=0.02) as emu:
        emu.subscribe_pulses(0, broken)
        emu.subscribe_pulses(0, heard)
        clock.advance(timedelta(hours=2))
        wait_for(lambda: heard.total == 20)
        with RawLine(emu.ports[0]) as line:
            line.send()
            assert decode_reply(strip_parity(line.read_reply())).meter_values().energy == 55
    assert "subscriber bug" in caplog.text


def test_subscribe_checks_the_meter_index() -> None:
    emu = Emulator(2, clock=ManualClock(START), load=ConstantLoad(1))
    with pytest.raises(UsageError, match="meter 2 does not exist"):
        emu.subscribe_pulses(2, lambda count, at: None)
    with pytest.raises(UsageError, match="meter must be an index"):
        emu.subscribe_pulses(True, lambda count, at: None)


async def test_async_emulator_live_pulses_with_live_pulses_on() -> None:
    """``live_pulses=True``: subscribers of the model itself hear pulses live too."""
    clock = ManualClock(START)
    model = MeterModel(MeterSettings(pulse_constant=1000), ConstantLoad(3), clock)
    seen: list[tuple[int, datetime]] = []
    all_heard = asyncio.Event()

    def hear(count: int, at: datetime) -> None:
        seen.append((count, at))
        if sum(c for c, _ in seen) >= 1000:
            all_heard.set()

    model.subscribe_pulses(hear)
    async with Emulator([model], live_pulses=True, speed=FAST, delay=0.02):
        clock.advance(timedelta(minutes=20))  # 1 kWh: 1000 pulses
        await all_heard.wait()
    assert sum(c for c, _ in seen) == 1000
    assert seen[-1][1] == START + timedelta(minutes=20)


def test_subscribing_to_a_running_emulator_from_another_thread_is_refused() -> None:
    with (
        EmulatorThread(1, clock=ManualClock(START), load=ConstantLoad(1)) as emu,
        pytest.raises(UsageError, match=r"EmulatorThread\.subscribe_pulses"),
    ):
        emu.emulator.subscribe_pulses(0, lambda count, at: None)
