"""The collector's history: each reading must follow the meter's last accepted one; values no
rule vouches for are confirmed by a second attempt; what stays implausible is a failure with
its bytes, never a reading. Against scripted meters and the emulator over loopback TCP."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.cli import main
from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.collector.history import DOUBTS, FIRST_SIGHT, Doubt, History, confirmable
from kamstrup382.emulator import ConstantLoad, EmulatorThread, Faults
from kamstrup382.protocol import MeterValues, Observation, decode_reply
from kamstrup382.reader import RetryPolicy
from kamstrup382.storage import FailureRecord, ReadingRecord
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import EXAMPLE, make_config, seen_before
from tests.collector.peer import ScriptedMeter, reply_with
from tests.fixtures.emulator import ExampleMeter

NOW = datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC)
#: A reading stored a quarter of an hour before.
SEEN = NOW - timedelta(minutes=15)
#: The example's values: energy 53 = 33 + 20 kWh, 482 h, actual peak 18.3 kW.
VALUES = decode_reply(EXAMPLE).meter_values()
#: The example with two digits of the hour counter swapped (482 h read as 428 h): the same
#: characters, so the same check character, and a telegram that breaks no rule of its own.
HOURS_SWAPPED = reply_with({"1.31": "0000428*h"})


def stored_record(meter: str, values: MeterValues, at: datetime) -> ReadingRecord:
    return ReadingRecord(
        meter=meter,
        slot=at,
        read_at=at,
        values=values,
        identification="KAM 685-382-OK-15",
        type_number="685-382-OK-15",
        bcc_algorithm="sum7",
        raw=EXAMPLE,
        answer_delay=0.02,
        duration=5.7,
        attempts=1,
    )


# -- the rules as data -------------------------------------------------------------------------


def observed(at: datetime = NOW, changes: dict[str, Any] | None = None) -> Observation:
    return Observation(replace(VALUES, **(changes or {})), at)


@pytest.mark.parametrize(
    ("changes", "hours", "doubted"),
    [
        ({"actual_peak": Decimal("19.2")}, 0.25, "actual_peak"),  # no rule bounds it
        ({"actual_peak": Decimal("18.4")}, 0.25, "actual_peak"),
        ({"last_month_peak": Decimal("1.8")}, 0.25, "last_month_peak"),
        ({"pulse_input": Decimal(10)}, 0.25, "pulse_input"),
        ({"hour_counter": Decimal(490)}, 7.9, None),  # the bound (8.9 h) sees a swap
        ({"hour_counter": Decimal(492)}, 10, "hour_counter"),  # 11 h allowed: a swap fits
        ({"hour_counter": Decimal(482)}, 10, "hour_counter"),  # even unchanged: 491 -> 419?
        ({"energy": Decimal(62), "tariff_1": Decimal(42)}, 10, "hour_counter"),
        ({"energy": Decimal(62), "tariff_1": Decimal(42)}, 1, None),  # the sum rule sees these
        ({}, 7, None),  # unchanged
    ],
)
def test_what_needs_confirming(
    changes: dict[str, object], hours: float, doubted: str | None
) -> None:
    before = observed(NOW - timedelta(hours=hours))
    after = observed(changes=changes)
    found = [d.register for d in DOUBTS if d.applies(before, after)]
    assert found == ([doubted] if doubted else [])


def test_a_doubt_about_the_hour_counter_holds_when_the_clock_went_back() -> None:
    doubt = Doubt("hour_counter", "test", beyond_hours=Decimal(8))
    assert doubt.applies(observed(NOW + timedelta(minutes=5)), observed())
    assert not doubt.applies(observed(NOW - timedelta(minutes=5)), observed())


def test_the_history_keeps_what_the_collector_has_and_loads_the_rest() -> None:
    history = History()
    mine = observed()
    history.accepted("a", mine)
    history.load(
        [
            stored_record("a", VALUES, SEEN),
            replace(stored_record("b", VALUES, SEEN), type_number="685-182-OK-15"),
            replace(stored_record("c", VALUES, SEEN), type_number="edited"),
        ]
    )
    assert history.last("a") is mine
    assert history.last("b") == Observation(VALUES, SEEN, 1)  # a one-phase meter
    assert history.last("c") == Observation(VALUES, SEEN, 3)  # unknown: the dialect's default
    assert history.last("d") is None
    assert len(history) == 3


def test_every_reader_gets_the_retries_to_confirm_with() -> None:
    assert confirmable(RetryPolicy(retries=0, backoff=0.5)) == RetryPolicy(2, 0.5)
    assert confirmable(RetryPolicy(retries=3)) == RetryPolicy(retries=3)


# -- through the collector ----------------------------------------------------------------------


async def read_once(
    url: str,
    meter: ScriptedMeter | ExampleMeter,
    *,
    seen: bool = True,
    retries: int = 2,
    clock_at: datetime = NOW,
) -> tuple[Collector, list[ReadingRecord]]:
    config = make_config(url, [meter.port], retries=retries, backoff=0.01)
    with open_storage(url) as storage:
        async with Collector(config, storage, clock=ManualClock(clock_at)) as collector:
            if seen:
                seen_before(collector, ["m0"])
            result = await collector.run_once()
    return collector, list(result.readings)


@pytest.mark.parametrize(
    ("make", "attempts"),
    [
        (partial(ExampleMeter), 3),  # heard in three attempts
        # 428 h, then 482: one is a swap of the other, 482 must be heard in two more
        (partial(ScriptedMeter, HOURS_SWAPPED, "answer"), 4),
        (partial(ScriptedMeter, "answer", HOURS_SWAPPED, "answer"), 4),
        (partial(ExampleMeter, (), ("silent",), ()), 4),  # a failed attempt in between
    ],
    ids=["agree", "swapped-first", "swapped-second", "silent-second"],
)
async def test_a_first_reading_is_confirmed_by_attempts_that_agree(
    storage_url: str, make: Callable[[], ScriptedMeter | ExampleMeter], attempts: int
) -> None:
    async with make() as meter:
        collector, (reading,) = await read_once(storage_url, meter, seen=False, retries=3)
        assert meter.requests == attempts
    assert reading.values == VALUES  # never the swapped 428 h
    assert reading.attempts == attempts
    assert collector.history.last("m0") == Observation(VALUES, NOW)


async def test_a_known_meter_is_read_at_the_first_attempt_and_its_history_follows(
    storage_url: str,
) -> None:
    async with ExampleMeter() as meter:
        collector, (reading,) = await read_once(storage_url, meter)
        assert meter.requests == 1
    assert reading.attempts == 1
    assert collector.history.last("m0") == Observation(VALUES, NOW)


async def test_the_history_is_loaded_from_the_storage_at_start(storage_url: str) -> None:
    """A restarted collector knows its meters: their next reading needs no confirming."""
    with open_storage(storage_url) as storage:
        storage.record([stored_record("m0", VALUES, SEEN)])
    async with ExampleMeter() as meter:
        _, (reading,) = await read_once(storage_url, meter, seen=False)
        assert meter.requests == 1
    assert reading.attempts == 1


async def test_two_telegrams_damaged_alike_do_not_confirm_against_a_third(
    storage_url: str,
) -> None:
    """The pulse input counted 120 pulses; two attempts show it swapped alike (210): they
    agree with each other, but 120 and 210 are one digit order apart, so a value must be
    heard in two telegrams more than its rival: 120 wins at the sixth attempt."""
    counted = reply_with({"1.26": "0000120"})
    swapped = reply_with({"1.26": "0000210"})
    async with ScriptedMeter(counted, swapped, swapped, counted, counted, counted) as meter:
        _, (reading,) = await read_once(storage_url, meter, retries=5)
    assert (reading.values.pulse_input, reading.attempts) == (Decimal(120), 6)


async def test_a_swap_a_known_meter_cannot_have_made_is_retried(storage_url: str) -> None:
    async with ScriptedMeter(HOURS_SWAPPED, "answer") as meter:
        _, (reading,) = await read_once(storage_url, meter)
    assert (reading.values, reading.attempts) == (VALUES, 2)


async def test_a_change_no_rule_bounds_is_confirmed(storage_url: str) -> None:
    """The actual peak rose by 0.9 kW since the last reading (a swap of its digits could make
    that): confirmed by a second telegram that agrees, not trusted on its own."""
    risen = reply_with({"1.6": "000019,2*kW"})
    async with ScriptedMeter(risen, risen) as meter:
        _, (reading,) = await read_once(storage_url, meter)
    assert (reading.values.actual_peak, reading.attempts) == (Decimal("19.2"), 2)
    # a telegram that disagrees is no confirmation: 20.1 kW (+1.8) does not confirm 19.2, nor
    # the reverse; the third telegram confirms the first
    other = reply_with({"1.6": "000020,1*kW"})
    async with ScriptedMeter(risen, other, risen) as meter:
        _, (reading,) = await read_once(storage_url, meter, clock_at=NOW + timedelta(hours=1))
    assert (reading.values.actual_peak, reading.attempts) == (Decimal("19.2"), 3)


async def test_a_telegram_that_stays_implausible_is_a_failure_with_its_bytes(
    storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The meter's energy went down since its last reading (62 kWh stored, 53 sent): every
    attempt refused, stored as a failure of kind ``implausible`` with the bytes, no reading."""
    with open_storage(storage_url) as storage:
        more = replace(VALUES, energy=Decimal(62), tariff_1=Decimal(42))
        storage.record([stored_record("m0", more, SEEN)])
    async with ExampleMeter() as meter:
        config = make_config(storage_url, [meter.port], retries=2, backoff=0.01)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=ManualClock(NOW)) as collector:
                result = await collector.run_once()
            failures = list(storage.failures())
            readings = list(storage.readings())
        assert meter.requests == 3
    assert result.readings == ()
    (failure,) = result.failures
    assert (failure.kind, failure.attempts, failure.raw) == ("implausible", 3, EXAMPLE)
    assert "went down from 0000062 kWh to 0000053 kWh" in failure.message
    assert failures == [failure]
    assert [r.read_at for r in readings] == [SEEN]  # only what was there before
    assert main(["status", "--storage", storage_url, "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["last_error"]["kind"] == "implausible"


async def test_a_telegram_lacking_a_register_is_retried_and_kept_as_implausible(
    storage_url: str,
) -> None:
    """It used to be a ``usage`` failure of one attempt: the slot lost although retries were
    configured. Now it is retried; when it persists, kept with its bytes."""
    lacking = reply_with({}, without=("1.26",))
    async with ScriptedMeter(lacking) as meter:
        config = make_config(storage_url, [meter.port], retries=2, backoff=0.01)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=ManualClock(NOW)) as collector:
                seen_before(collector, ["m0"])
                result = await collector.run_once()
        assert meter.requests == 3
    (failure,) = result.failures
    assert (failure.kind, failure.attempts, failure.raw) == ("implausible", 3, lacking)
    async with ScriptedMeter(lacking, "answer") as meter:
        _, (reading,) = await read_once(storage_url, meter, clock_at=NOW + timedelta(hours=1))
    assert (reading.values, reading.attempts) == (VALUES, 2)


async def test_a_first_reading_no_attempt_confirms_is_not_stored(storage_url: str) -> None:
    async with ScriptedMeter(HOURS_SWAPPED, "answer") as meter:
        config = make_config(storage_url, [meter.port], retries=2, backoff=0.01)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=ManualClock(NOW)) as collector:
                result = await collector.run_once()
            assert list(storage.readings()) == []
    (failure,) = result.failures
    assert (failure.kind, failure.attempts, failure.raw) == ("implausible", 3, EXAMPLE)
    assert failure.message.startswith(FIRST_SIGHT)
    assert "(2 of 3 telegrams agree)" in failure.message
    assert collector.history.last("m0") is None


async def test_first_readings_get_two_retries_even_when_none_are_configured(
    tmp_path: object,
) -> None:
    url = f"sqlite:///{tmp_path}/r.sqlite"
    async with ExampleMeter() as meter:
        _, (reading,) = await read_once(url, meter, seen=False, retries=0)
    assert reading.attempts == 3


async def test_emulated_meters_read_slot_after_slot_are_confirmed_once(tmp_path: object) -> None:
    """Four emulated meters, eight hourly slots on the emulator's own clock: only each
    meter's first readout takes a second attempt (the household loads change the counters
    within their bounds), and every stored value is the meter's."""
    url = f"sqlite:///{tmp_path}/e.sqlite"
    clock = ManualClock(NOW)
    with EmulatorThread(meters=4, transport="tcp", speed=200.0, delay=0.02, clock=clock) as emu:
        config = make_config(url, emu.ports, interval=3600, backoff=0.01)
        readings: list[ReadingRecord] = []
        with open_storage(url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                for _ in range(8):
                    result = await collector.run_once()
                    assert result.ok, result.summary()
                    readings += result.readings
                    clock.advance(timedelta(hours=1))
        sent = {(i, e.requested_at): e.values for i in range(4) for e in emu.log(i)}
    for reading in readings:
        assert reading.values == sent[(int(reading.meter[1:]), reading.read_at)]
    first = {r.meter: r for r in reversed(readings)}
    assert sorted(r.attempts for r in first.values()) == [3, 3, 3, 3]
    assert sum(r.attempts for r in readings) == 4 * 3 + 4 * 7


# -- the BCC algorithm across readouts ----------------------------------------------------------


async def read_slots(
    faults: Faults, slots: int, *, keep_connected: bool, tmp_path: Path
) -> list[ReadingRecord | FailureRecord]:
    """``slots`` quarter-hourly readouts of one emulated SUM7 meter with ``faults``."""
    url = f"sqlite:///{tmp_path}/bcc.sqlite"
    clock = ManualClock(NOW)
    results: list[ReadingRecord | FailureRecord] = []
    emulated = EmulatorThread(
        meters=1, speed=200.0, delay=0.02, clock=clock, load=ConstantLoad(1.5), faults=faults
    )
    with emulated as emu:
        config = make_config(url, emu.ports, retries=2, backoff=0.01, keep_connected=keep_connected)
        with open_storage(url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                for _ in range(slots):
                    result = await collector.run_once()
                    results += [*result.readings, *result.failures]
                    clock.advance(timedelta(minutes=15))
    return results


def outcome(result: ReadingRecord | FailureRecord) -> tuple[str, int]:
    if isinstance(result, ReadingRecord):
        return (result.bcc_algorithm, result.attempts)
    return (result.kind, result.attempts)


@pytest.mark.parametrize("keep_connected", [False, True])
async def test_one_telegram_of_the_other_algorithm_is_never_accepted(
    keep_connected: bool, tmp_path: Path
) -> None:
    """The meter's XOR telegram (request 3) is refused: its algorithm is known; the next
    attempt's SUM7 telegram is read, and the meter's algorithm stays SUM7."""
    faults = Faults(script=((), (), (), ("xor",), (), ("xor",), ()))
    results = await read_slots(faults, 4, keep_connected=keep_connected, tmp_path=tmp_path)
    assert [outcome(r) for r in results] == [("sum7", 3), ("sum7", 2), ("sum7", 2), ("sum7", 1)]


@pytest.mark.parametrize("keep_connected", [False, True])
async def test_a_meter_that_changed_its_algorithm_is_followed_after_two_readouts(
    keep_connected: bool, tmp_path: Path
) -> None:
    """From request 3 on the meter sends XOR: that readout fails (every attempt refused) and
    leaves a suspicion; the next readout agrees, and the meter is XOR from then on."""
    faults = Faults(xor=1.0, script=((), (), ()))
    results = await read_slots(faults, 4, keep_connected=keep_connected, tmp_path=tmp_path)
    assert [outcome(r) for r in results] == [("sum7", 3), ("bcc", 3), ("xor", 1), ("xor", 1)]


@pytest.mark.parametrize("keep_connected", [False, True])
async def test_a_suspicion_the_next_readout_does_not_confirm_is_cleared(
    keep_connected: bool, tmp_path: Path
) -> None:
    """Three XOR telegrams in a row (one readout) and then SUM7 again: the suspicion is
    cleared, and a later single XOR telegram is refused again."""
    script = ((), (), (), ("xor",), ("xor",), ("xor",), (), ("xor",), ())
    results = await read_slots(
        Faults(script=script), 4, keep_connected=keep_connected, tmp_path=tmp_path
    )
    assert [outcome(r) for r in results] == [("sum7", 3), ("bcc", 3), ("sum7", 1), ("sum7", 2)]


async def test_a_replaced_meter_is_taken_after_two_readouts(
    storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another meter on the port (a new customer number, lower counters): refused in the
    readout that first hears it, taken as a replacement when the next one hears it too."""
    other = reply_with(
        {
            "0.0": "00077777",
            "1.20": "0000012*kWh",
            "1.20.1": "0000007*kWh",
            "1.20.2": "0000005*kWh",
            "1.31": "0000030*h",
        }
    )
    config_at = NOW
    async with ScriptedMeter(*(other,) * 6) as meter:
        config = make_config(storage_url, [meter.port], retries=2, backoff=0.01)
        with open_storage(storage_url) as storage:
            clock = ManualClock(config_at)
            async with Collector(config, storage, clock=clock) as collector:
                seen_before(collector, ["m0"])
                first = await collector.run_once()
                clock.set(config_at + timedelta(minutes=15))
                second = await collector.run_once()
    assert not first.readings
    (failure,) = first.failures
    assert (failure.kind, failure.attempts) == ("implausible", 3)
    assert "taken as a replaced meter if the next readout hears it too" in failure.message
    (reading,) = second.readings
    assert reading.values.customer_number == "00077777"
    assert reading.values.energy == Decimal(12)
    last = collector.history.last("m0")
    assert last is not None
    assert last.values.customer_number == "00077777"
    assert any("taken as a replaced meter" in r.getMessage() for r in caplog.records)


async def test_one_readout_of_another_meter_is_forgotten_by_a_readout_of_the_old(
    storage_url: str,
) -> None:
    other = reply_with({"0.0": "00077777"})
    async with ScriptedMeter(other, other, other, "answer", other, other, other) as meter:
        config = make_config(storage_url, [meter.port], retries=2, backoff=0.01)
        with open_storage(storage_url) as storage:
            clock = ManualClock(NOW)
            async with Collector(config, storage, clock=clock) as collector:
                seen_before(collector, ["m0"])
                results = []
                for step in range(3):
                    clock.set(NOW + timedelta(minutes=15 * step))
                    results.append(await collector.run_once())
    assert [len(r.readings) for r in results] == [0, 1, 0]  # the old meter answered between
    assert results[1].readings[0].values.customer_number == VALUES.customer_number
