"""Wall-clock slots: every interval starts at a multiple of the interval since the Unix epoch.

A 15-minute interval gives slots at :00, :15, :30 and :45 of every hour (UTC, and in every
time zone whose offset is a multiple of 15 minutes); an hour gives full hours. Intervals that
do not divide a day still align to the epoch, so every collector computes the same slots.

Slot times are times of the collector's clock (:class:`~kamstrup382.clock.Clock`), never of
``time.monotonic``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

__all__ = ["CONNECT_AHEAD", "EPOCH", "connect_ahead", "jitter_offset", "next_slot", "slot_of"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Seconds before a meter's start (slot boundary plus jitter) its connection is opened, at most
#: a tenth of its interval: the request then goes out at the start, not after a ramp of
#: thousands of connects. The slot's meters are claimed before (PostgreSQL leases).
CONNECT_AHEAD = 5.0


def slot_of(when: datetime, interval: timedelta) -> datetime:
    """The start of the interval ``when`` falls in (``when`` aware)."""
    if interval <= timedelta(0):
        raise ValueError(f"interval must be positive, got {interval}")
    return EPOCH + ((when - EPOCH) // interval) * interval


def next_slot(when: datetime, interval: timedelta) -> datetime:
    """The start of the interval after the one ``when`` falls in."""
    return slot_of(when, interval) + interval


def jitter_offset(meter: str, slot: datetime, jitter: timedelta) -> timedelta:
    """A pseudo-random delay in ``[0, jitter)`` for one meter in one slot.

    Derived from the meter name and the slot, so that it differs from slot to slot and meter
    to meter but is the same in every collector and after a restart.
    """
    if jitter <= timedelta(0):
        return timedelta(0)
    rng = random.Random(f"{meter}|{slot.isoformat()}")
    return timedelta(microseconds=rng.randrange(int(jitter / timedelta(microseconds=1))))


def connect_ahead(interval: timedelta) -> timedelta:
    """How long before its start a meter with ``interval`` is connected."""
    return min(timedelta(seconds=CONNECT_AHEAD), interval / 10)
