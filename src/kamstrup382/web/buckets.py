"""Consumption per hour, day or month: intervals between readings summed into calendar buckets.

An interval that spans several buckets (a gap of failed readouts, a reading late in an hour) is
shared between them in proportion to the time it spends in each, to the Wh (0.001 kWh),
rounding the running total so that no share is negative and the shares add up exactly to the
interval's energy.
Bucket edges are wall-clock edges in the given time zone.

A KMP meter has no tariff registers: its intervals' tariffs are ``None`` (unknown, never 0),
and so are the tariffs of a bucket any such interval falls in; its energy is summed as any.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from kamstrup382.storage.records import ConsumptionRow

__all__ = ["Bucket", "BucketRow", "bucket_consumption", "bucket_start", "next_bucket_start"]

_WH = Decimal("0.001")


class Bucket(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class BucketRow:
    """Energy consumed in one bucket ``[start, end)``, in kWh; times aware, in the bucket's zone.
    The tariffs are ``None`` where an interval of the bucket has none (a KMP reading's)."""

    start: datetime
    end: datetime
    energy: Decimal
    tariff_1: Decimal | None
    tariff_2: Decimal | None


def _floor_wall(local: datetime, bucket: Bucket) -> datetime:
    wall = local.replace(tzinfo=None, minute=0, second=0, microsecond=0)
    if bucket is Bucket.HOUR:
        return wall
    wall = wall.replace(hour=0)
    return wall if bucket is Bucket.DAY else wall.replace(day=1)


def _next_wall(wall: datetime, bucket: Bucket) -> datetime:
    if bucket is Bucket.HOUR:
        return wall + timedelta(hours=1)
    if bucket is Bucket.DAY:
        return wall + timedelta(days=1)
    return (
        wall.replace(year=wall.year + 1, month=1)
        if wall.month == 12
        else wall.replace(month=wall.month + 1)
    )


def bucket_start(at: datetime, bucket: Bucket, zone: tzinfo) -> datetime:
    """The start of the bucket holding the instant ``at`` (aware), as an aware time in ``zone``."""
    return _floor_wall(at.astimezone(zone), bucket).replace(tzinfo=zone)


def next_bucket_start(start: datetime, bucket: Bucket, zone: tzinfo) -> datetime:
    """The start of the bucket after the one starting at ``start``."""
    return _next_wall(start.replace(tzinfo=None), bucket).replace(tzinfo=zone)


def _shares(
    start: datetime, end: datetime, bucket: Bucket, zone: tzinfo
) -> list[tuple[datetime, float]]:
    """(bucket start, fraction of [start, end) inside it) for every bucket the interval touches."""
    first = bucket_start(start, bucket, zone)
    total = (end - start).total_seconds()
    if total <= 0:
        return [(first, 1.0)]
    shares: list[tuple[datetime, float]] = []
    edge = first
    while True:
        nxt = next_bucket_start(edge, bucket, zone)
        lo = max(start, edge.astimezone(UTC))
        hi = min(end, nxt.astimezone(UTC))
        if hi > lo:
            shares.append((edge, (hi - lo).total_seconds() / total))
        if nxt.astimezone(UTC) >= end:
            return shares
        edge = nxt


def _split(amount: Decimal, fractions: list[float]) -> list[Decimal]:
    """Shares of ``amount`` to the Wh, rounded on the running total: never negative, exact sum."""
    parts: list[Decimal] = []
    done = Decimal(0)
    running = 0.0
    for i, fraction in enumerate(fractions):
        running += fraction
        upto = (
            amount if i == len(fractions) - 1 else (amount * Decimal(repr(running))).quantize(_WH)
        )
        upto = min(max(upto, done), amount)
        parts.append(upto - done)
        done = upto
    return parts


def bucket_consumption(
    rows: Iterable[ConsumptionRow], bucket: Bucket, zone: tzinfo = UTC
) -> list[BucketRow]:
    """Sum consumption rows (of one meter) into buckets, in time order; empty buckets omitted."""
    sums: dict[datetime, list[Decimal | None]] = {}
    for row in rows:
        shares = _shares(row.start, row.end, bucket, zone)
        fractions = [f for _, f in shares]
        columns = [
            None if value is None else _split(value, fractions)
            for value in (row.energy, row.tariff_1, row.tariff_2)
        ]
        for i, (edge, _) in enumerate(shares):
            acc = sums.setdefault(edge, [Decimal(0), Decimal(0), Decimal(0)])
            for k, column in enumerate(columns):
                total = acc[k]
                acc[k] = None if column is None or total is None else total + column[i]
    return [
        BucketRow(
            start=edge,
            end=next_bucket_start(edge, bucket, zone),
            energy=acc[0] or Decimal(0),  # never None: every interval has its energy
            tariff_1=acc[1],
            tariff_2=acc[2],
        )
        for edge, acc in sorted(sums.items(), key=lambda item: item[0].astimezone(UTC))
    ]
