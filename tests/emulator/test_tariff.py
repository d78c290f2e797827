"""The time-of-use schedule that drives the tariff input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.emulator import TariffSchedule
from kamstrup382.errors import ConfigError

US = timedelta(microseconds=1)
CPH = ZoneInfo("Europe/Copenhagen")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_night_range_is_tariff_2_half_open() -> None:
    night = TariffSchedule.parse("22:00-06:00")
    assert night.tariff_at(at("2026-03-10T21:59:59.999999")) == 1
    assert night.tariff_at(at("2026-03-10T22:00:00")) == 2
    assert night.tariff_at(at("2026-03-11T00:00:00")) == 2
    assert night.tariff_at(at("2026-03-11T05:59:59.999999")) == 2
    assert night.tariff_at(at("2026-03-11T06:00:00")) == 1
    assert night.tariff_at(at("2026-03-11T12:00:00")) == 1


def test_day_range_and_several_ranges() -> None:
    sched = TariffSchedule.parse(" 12:00-13:30 , 22:00-06:00,17:00:30-18:00")
    assert sched.ranges == ((12 * 3600, 13 * 3600 + 1800), (22 * 3600, 6 * 3600), (61230, 64800))
    assert sched.tariff_at(at("2026-03-10T12:00")) == 2
    assert sched.tariff_at(at("2026-03-10T13:30")) == 1
    assert sched.tariff_at(at("2026-03-10T17:00:29")) == 1
    assert sched.tariff_at(at("2026-03-10T17:00:30")) == 2
    assert sched.tariff_at(at("2026-03-10T03:00")) == 2
    assert str(sched) == "12:00-13:30,22:00-06:00,17:00:30-18:00"
    assert TariffSchedule.parse(str(sched)) == sched


def test_whole_day_and_24_00() -> None:
    always = TariffSchedule.parse("00:00-24:00")
    for hour in range(24):
        assert always.tariff_at(at(f"2026-03-10T{hour:02d}:17")) == 2
    late = TariffSchedule.parse("23:00-24:00")
    assert late.tariff_at(at("2026-03-10T23:59:59")) == 2
    assert late.tariff_at(at("2026-03-11T00:00")) == 1


def test_overlapping_ranges_join() -> None:
    sched = TariffSchedule.parse("10:00-12:00,11:00-13:00")
    assert [sched.tariff_at(at(f"2026-03-10T{h:02d}:30")) for h in range(9, 14)] == [1, 2, 2, 2, 1]


def test_next_boundary() -> None:
    night = TariffSchedule.parse("22:00-06:00")
    assert night.next_boundary(at("2026-03-10T12:00")) == at("2026-03-10T22:00")
    assert night.next_boundary(at("2026-03-10T22:00")) == at("2026-03-11T06:00")
    assert night.next_boundary(at("2026-03-11T05:59:59.999999")) == at("2026-03-11T06:00")
    assert night.next_boundary(at("2026-03-11T06:00")) == at("2026-03-11T22:00")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "range 1"),
        ("22:00", "range 1 '22:00': expected START-END"),
        ("22:00-06:00,xx-06:00", "range 2 'xx-06:00'"),
        ("25:00-06:00", "after 23:59:59"),
        ("22:00-24:01", "after 24:00"),
        ("24:00-06:00", "after 23:59:59"),
        ("22:60-06:00", "not a time of day"),
        ("06:00-06:00", "start and end are the same"),
        ("06:00-07:00-08:00", "expected START-END"),
    ],
)
def test_bad_schedules_name_the_range(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        TariffSchedule.parse(text)
    assert info.value.key == "tariff_schedule"
    assert needle in str(info.value)


def test_zone_winter_and_summer() -> None:
    night = TariffSchedule.parse("22:00-06:00", zone=CPH)
    # winter: CET = UTC+1, the night is 21:00-05:00 UTC
    assert night.tariff_at(at("2026-01-10T20:59:59")) == 1
    assert night.tariff_at(at("2026-01-10T21:00")) == 2
    assert night.next_boundary(at("2026-01-10T21:00")) == at("2026-01-11T05:00")
    # summer: CEST = UTC+2, 20:00-04:00 UTC
    assert night.tariff_at(at("2026-07-10T20:00")) == 2
    assert night.tariff_at(at("2026-07-11T04:00")) == 1


TRANSITION_DAYS = [at("2026-03-28T12:00"), at("2026-10-24T12:00"), at("2026-06-01T00:00")]


@settings(max_examples=200, deadline=None)
@given(
    text=st.sampled_from(["22:00-06:00", "02:30-03:15", "01:00-02:30,12:00-13:00", "00:00-24:00"]),
    base=st.sampled_from(TRANSITION_DAYS),
    offset_us=st.integers(0, 3 * 24 * 3600 * 10**6),
    part=st.fractions(0, 1),
)
def test_tariff_is_constant_between_boundaries(
    text: str, base: datetime, offset_us: int, part: Fraction
) -> None:
    """From any instant to the next boundary the tariff does not change (also over DST)."""
    sched = TariffSchedule.parse(text, zone=CPH)
    instant = base + offset_us * US
    nxt = sched.next_boundary(instant)
    assert instant < nxt <= instant + timedelta(days=2)
    inside = min(instant + int((nxt - instant) / US * part) * US, nxt - US)
    assert sched.tariff_at(instant) == sched.tariff_at(inside) == sched.tariff_at(nxt - US)
