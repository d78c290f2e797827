"""Consumption buckets: proportional sharing across edges, exact totals, zones and DST."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from kamstrup382.storage.records import ConsumptionRow
from kamstrup382.web.buckets import Bucket, bucket_consumption, bucket_start, next_bucket_start

CPH = zoneinfo.ZoneInfo("Europe/Copenhagen")


def row(start: datetime, end: datetime, energy: int, t1: int, t2: int) -> ConsumptionRow:
    return ConsumptionRow("m", start, end, Decimal(energy), Decimal(t1), Decimal(t2))


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def test_interval_inside_one_hour_goes_to_that_hour() -> None:
    rows = bucket_consumption([row(at(10), at(10, 15), 2, 2, 0)], Bucket.HOUR)
    assert [(r.start, r.end, r.energy) for r in rows] == [(at(10), at(11), Decimal(2))]


def test_interval_over_an_edge_is_shared_by_time() -> None:
    rows = bucket_consumption([row(at(10, 30), at(12), 3, 3, 0)], Bucket.HOUR)
    assert [r.energy for r in rows] == [Decimal("1.000"), Decimal("2.000")]
    assert [r.start for r in rows] == [at(10), at(11)]


def test_shares_add_up_exactly() -> None:
    rows = bucket_consumption([row(at(10, 20), at(13, 0), 1, 0, 1)], Bucket.HOUR)
    assert sum(r.energy for r in rows) == Decimal(1)
    assert sum(r.tariff_2 for r in rows) == Decimal(1)
    assert sum(r.tariff_1 for r in rows) == Decimal(0)
    assert [r.energy for r in rows] == [Decimal("0.250"), Decimal("0.375"), Decimal("0.375")]


def test_day_buckets_follow_the_zone() -> None:
    # 23:30 UTC on 1 March is 00:30 on 2 March in Copenhagen (UTC+1)
    rows = bucket_consumption([row(at(23, 30), at(23, 45), 1, 1, 0)], Bucket.DAY, CPH)
    assert rows[0].start == datetime(2026, 3, 2, tzinfo=CPH)
    assert rows[0].start.isoformat() == "2026-03-02T00:00:00+01:00"
    assert bucket_consumption([row(at(23, 30), at(23, 45), 1, 1, 0)], Bucket.DAY)[0].start == at(0)


def test_month_buckets_roll_over_the_year() -> None:
    start = datetime(2026, 12, 31, 23, tzinfo=UTC)
    rows = bucket_consumption([row(start, start + timedelta(hours=2), 2, 2, 0)], Bucket.MONTH)
    assert [(r.start.month, r.end, r.energy) for r in rows] == [
        (12, datetime(2027, 1, 1, tzinfo=UTC), Decimal("1.000")),
        (1, datetime(2027, 2, 1, tzinfo=UTC), Decimal("1.000")),
    ]


def test_daylight_saving_day_is_23_hours_long() -> None:
    day = bucket_start(datetime(2026, 3, 29, 12, tzinfo=UTC), Bucket.DAY, CPH)
    nxt = next_bucket_start(day, Bucket.DAY, CPH)
    assert nxt.astimezone(UTC) - day.astimezone(UTC) == timedelta(hours=23)


def test_rows_are_summed_per_bucket_in_time_order() -> None:
    rows = bucket_consumption(
        [
            row(at(9, 0), at(9, 30), 1, 1, 0),
            row(at(8, 0), at(8, 30), 4, 0, 4),
            row(at(9, 30), at(10), 2, 1, 1),
        ],
        Bucket.HOUR,
    )
    assert [(r.start.hour, r.energy, r.tariff_1, r.tariff_2) for r in rows] == [
        (8, Decimal(4), Decimal(0), Decimal(4)),
        (9, Decimal(3), Decimal(2), Decimal(1)),
    ]


@given(
    offset=st.integers(0, 10_000),
    minutes=st.integers(1, 100_000),
    energy=st.integers(0, 10_000),
    bucket=st.sampled_from(list(Bucket)),
)
def test_total_is_kept_for_any_interval(
    offset: int, minutes: int, energy: int, bucket: Bucket
) -> None:
    start = at(0) + timedelta(minutes=offset)
    rows = bucket_consumption(
        [row(start, start + timedelta(minutes=minutes), energy, energy, 0)], bucket, CPH
    )
    assert sum(r.energy for r in rows) == energy
    assert all(r.energy >= 0 for r in rows)
    starts = [r.start.astimezone(UTC) for r in rows]
    assert starts == sorted(starts)
    assert starts[0] <= start < rows[0].end.astimezone(UTC)
