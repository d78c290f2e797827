"""A collector (re)started a few milliseconds before a slot ends: that slot is not its own.

It begins the slot (a collector started mid-slot reads it at once), but the slot has ended when
the lines' turns come: its meters are not recorded as ``missed`` ("fell behind": nothing fell
behind, the collector was not running when they were due); the next slot is read as usual.
Against emulated meters over TCP, into SQLite and PostgreSQL, on a clock that moves 1 ms each
time it is read (so that the end passes between the collector's start and its first turn, the
same way on every run).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.emulator import EmulatorThread
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config

INTERVAL = timedelta(minutes=1)
END = datetime(2026, 3, 1, 10, 1, tzinfo=UTC)  # the end of the slot the collector joins


class TickingClock(ManualClock):
    """A manual clock that moves ``step`` forward each time it is read."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        super().__init__(start)
        self.step = step

    def now(self) -> datetime:
        return self.advance(self.step)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(20_000):  # 20 s at most
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met in time")


async def test_a_slot_joined_just_before_its_end_is_not_recorded_as_missed(
    storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kamstrup382.collector")
    # read first at END - 2.5 ms + 1 ms (when run() begins), then at END - 0.5 ms (the slots
    # due then: the ending one is begun), past END at the lines' turns
    clock = TickingClock(END - timedelta(microseconds=3500), timedelta(milliseconds=1))
    with EmulatorThread(meters=2, transport="tcp", speed=200, delay=0.02) as emu:
        config = make_config(storage_url, emu.ports, interval=60)
        with open_storage(storage_url) as storage:
            collector = Collector(config, storage, clock=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run(stop))
            try:
                await until(lambda: len(list(storage.readings())) >= 2)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
            readings = list(storage.readings())
            failures = [a for a in storage.attempts() if not a.ok]
    assert failures == []  # no "missed: the collector fell behind" for the slot joined late
    assert {(r.meter, r.slot) for r in readings} == {("m0", END), ("m1", END)}  # the next one
    joined = [r.getMessage() for r in caplog.records if "joined" in r.getMessage()]
    assert len(joined) == 2  # one line each
    assert all(m.startswith("slot 2026-03-01T10:00:00+00:00: joined 0.00") for m in joined)
