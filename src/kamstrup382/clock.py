"""Clocks: real time, scaled time (the demo: a day a minute) and manual time (tests).

The meter model, the emulator and the collector take a clock instead of calling
``datetime.now`` or ``time.time`` themselves, so that a test can move a month in milliseconds
and the demo can run a day in a minute. All times are timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from kamstrup382.errors import UsageError

__all__ = ["Clock", "ManualClock", "ScaledClock", "SystemClock", "utc"]


def utc(value: datetime) -> datetime:
    """``value`` as aware UTC (a naive value is taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware UTC."""

    def real_seconds(self, virtual: timedelta) -> float:
        """How many real seconds pass while ``virtual`` time passes on this clock."""

    async def sleep_until(self, when: datetime) -> None:
        """Sleep (asyncio) until this clock shows ``when`` or later."""


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds(self, virtual: timedelta) -> float:
        return virtual.total_seconds()

    async def sleep_until(self, when: datetime) -> None:
        # the wall clock may be stepped while we sleep: look again when the sleep ends
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)


class ScaledClock:
    """Virtual time that starts at ``start`` and runs ``factor`` times faster than real time."""

    def __init__(self, start: datetime, factor: float) -> None:
        if factor <= 0:
            raise UsageError(f"clock factor must be positive, got {factor}")
        self.start = utc(start)
        self.factor = factor
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._origin) * self.factor)

    def real_seconds(self, virtual: timedelta) -> float:
        return virtual.total_seconds() / self.factor

    async def sleep_until(self, when: datetime) -> None:
        # the loop's timer and the monotonic clock may round apart: look again at the end
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left / self.factor)


class ManualClock:
    """A clock that only moves when told to (tests). Thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = utc(start) if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            if utc(when) < self._now:
                raise UsageError("a ManualClock does not go backwards")
            self._now = utc(when)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise UsageError("a ManualClock does not go backwards")
        with self._lock:
            self._now += delta
            return self._now

    def real_seconds(self, virtual: timedelta) -> float:
        return 0.0

    async def sleep_until(self, when: datetime) -> None:
        # another thread moves this clock: poll it (tests only)
        while self.now() < when:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
