"""Readers against the emulator's faults the block check cannot see, and BCC ``auto`` across
readouts: over loopback TCP, every reading compared with the emulator's ground-truth log.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from kamstrup382.clock import ManualClock
from kamstrup382.emulator import ConstantLoad, EmulatorThread, Faults, MeterModel
from kamstrup382.emulator.line import Exchange
from kamstrup382.errors import BccError, ImplausibleError, Kamstrup382Error, UsageError
from kamstrup382.protocol import BccAlgorithm, MeterValues, Observation, check_history, strip_parity
from kamstrup382.reader import AsyncReader, BccMemory, Reader, Reading, Timing

FAST = Timing(answer_timeout=0.1, answer_margin=0.05)
START = datetime(2026, 3, 1, 12, tzinfo=UTC)
Outcome = Reading | Kamstrup382Error


class Meter:
    """The emulator (one meter, 0.8 kW, a manual clock) with its ground-truth log."""

    def __init__(self, faults: Faults, *, seed: int = 0) -> None:
        self.clock = ManualClock(START)
        self.model = MeterModel(load=ConstantLoad(Decimal("0.8")), clock=self.clock)
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self.emulator = EmulatorThread(
            [self.model],
            transport="tcp",
            speed=50.0,
            delay=0.02,
            faults=faults,
            seed=seed,
            on_exchange=self._logged,
        )

    def _logged(self, meter: int, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    @property
    def port(self) -> str:
        return self.emulator.ports[0]

    def truth(self, reading: Reading) -> Exchange:
        """The exchange that sent ``reading``'s reply (waiting for the log, bounded)."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with self._lock:
                sent = [
                    e
                    for e in self.exchanges
                    if e.values is not None and strip_parity(e.wire).endswith(reading.raw)
                ]
            if sent:
                return sent[-1]
            time.sleep(0.01)
        raise AssertionError(f"no exchange sent {reading.raw!r}")

    def __enter__(self) -> Meter:
        self.emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def readouts(api: str, meter: Meter, count: int, step: timedelta, **options: Any) -> list[Outcome]:
    """``count`` readouts, the meter's clock moved ``step`` before each after the first, each
    held to the history of the last reading returned (the collector's ``accept``)."""
    options = {"timing": FAST, "backoff": 0.0, **options}
    last: list[Observation] = []

    def accept(reading: Reading) -> None:
        current = Observation(reading.meter_values(), meter.clock.now())
        if last:
            check_history(last[-1], current)

    def returned(reading: Reading) -> Reading:
        last.append(Observation(reading.meter_values(), meter.clock.now()))
        return reading

    outcomes: list[Outcome] = []
    if api == "sync":
        with Reader(meter.port, **options) as reader:
            for number in range(count):
                if number:
                    meter.clock.advance(step)
                try:
                    outcomes.append(returned(reader.read(accept=accept)))
                except Kamstrup382Error as error:
                    outcomes.append(error)
        return outcomes

    async def run() -> None:
        async with AsyncReader(meter.port, **options) as reader:
            for number in range(count):
                if number:
                    meter.clock.advance(step)
                try:
                    outcomes.append(returned(await reader.read(accept=accept)))
                except Kamstrup382Error as error:
                    outcomes.append(error)

    asyncio.run(run())
    return outcomes


def test_shift_and_swap_are_caught_or_the_truth_is_returned(api: str) -> None:
    """Every reading returned holds exactly the values the meter had; the damage the block
    check cannot see costs retries (ImplausibleError), never a wrong value."""
    faults = Faults(script=((),), shift=0.35, swap=0.35)
    with Meter(faults, seed=7) as meter:
        outcomes = readouts(api, meter, 30, timedelta(hours=1), retries=6)
        blind = [e for e in meter.exchanges if {"shift", "swap"} & set(e.kinds)]
        readings = [o for o in outcomes if isinstance(o, Reading)]
        for reading in readings:
            exchange = meter.truth(reading)
            assert reading.meter_values() == exchange.values, exchange.faults
    failures = [o for o in outcomes if not isinstance(o, Reading)]
    assert all(isinstance(f, ImplausibleError) for f in failures), failures
    assert len(blind) >= 10  # the faults did happen
    assert len(readings) >= 25
    assert sum(r.attempts - 1 for r in readings) >= 5  # and cost attempts, not values


def values_of(outcome: Outcome) -> MeterValues:
    assert isinstance(outcome, Reading), outcome
    return outcome.meter_values()


def test_a_meter_that_changes_to_xor_is_followed_after_two_readouts(api: str) -> None:
    # two clean readouts (the meter's sum), then the meter speaks XOR for good
    faults = Faults(script=((), ()), xor=1.0)
    with Meter(faults) as meter:
        outcomes = readouts(api, meter, 4, timedelta(minutes=15), retries=2)
    first, second, third, fourth = outcomes
    assert isinstance(first, Reading) and first.bcc_algorithm is BccAlgorithm.SUM7
    assert isinstance(second, Reading) and second.bcc_algorithm is BccAlgorithm.SUM7
    assert isinstance(third, BccError) and third.attempts == 3  # refused, every attempt
    assert isinstance(fourth, Reading) and fourth.bcc_algorithm is BccAlgorithm.XOR
    assert fourth.attempts == 1


def test_one_telegram_matching_the_other_algorithm_is_never_accepted(api: str) -> None:
    # learned from a clean reply; then one XOR telegram in each readout, the sum after it
    faults = Faults(script=((), ("xor",), (), ("xor",), ()))
    with Meter(faults) as meter:
        outcomes = readouts(api, meter, 3, timedelta(minutes=15), retries=2)
    for outcome in outcomes:
        assert isinstance(outcome, Reading) and outcome.bcc_algorithm is BccAlgorithm.SUM7
    assert [o.attempts for o in outcomes if isinstance(o, Reading)] == [1, 2, 2]


def test_fresh_readers_carry_the_memory(api: str) -> None:
    """A reader per readout (the collector's) follows the meter as one kept reader does."""
    faults = Faults(script=((),), xor=1.0)
    memory = BccMemory()
    outcomes: list[Outcome] = []
    with Meter(faults) as meter:
        for _ in range(3):
            reader = Reader(meter.port, timing=FAST, backoff=0.0, retries=1, bcc_memory=memory)
            with reader:
                try:
                    outcomes.append(reader.read())
                except Kamstrup382Error as error:
                    outcomes.append(error)
            memory = reader.bcc_memory
    first, second, third = outcomes
    assert isinstance(first, Reading) and first.bcc_algorithm is BccAlgorithm.SUM7
    assert isinstance(second, BccError)
    assert memory == BccMemory(BccAlgorithm.XOR, None, confirmed=True)
    assert isinstance(third, Reading) and third.bcc_algorithm is BccAlgorithm.XOR


def test_readers_take_max_reply() -> None:
    assert Reader("socket://127.0.0.1:1", max_reply=65536).session.max_reply == 65536
    assert Reader("socket://127.0.0.1:1", max_reply=167).session.max_reply == 167
    assert AsyncReader("socket://127.0.0.1:1", max_reply=4096).session.max_reply == 4096
    for bad in (166, 70_000, 2.5, True):
        with pytest.raises(UsageError, match="max_reply"):
            Reader("socket://127.0.0.1:1", max_reply=bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="max_reply"):
            AsyncReader("socket://127.0.0.1:1", max_reply=bad)  # type: ignore[arg-type]
