"""Validation of what a request asks for: meter names, ISO dates, buckets, limits, formats.

Each check raises :class:`BadParameter` naming the parameter and the problem; the app turns it
into a 400 JSON error. The patterns here are the ones the OpenAPI description declares.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from kamstrup382.errors import UsageError
from kamstrup382.web.buckets import Bucket

__all__ = [
    "DATE_PATTERN",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "METER_PATTERN",
    "TZ_PATTERN",
    "BadParameter",
    "check_query",
    "parse_bucket",
    "parse_format",
    "parse_limit",
    "parse_meter",
    "parse_time",
    "parse_zone",
    "zone_names",
]

#: A meter name, as the collector's config allows it.
METER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: An ISO 8601 date, or date and time with an optional UTC offset (``Z`` or ``+hh:mm``);
#: this takes every RFC 3339 ``date`` and ``date-time``, and a date-time without seconds or
#: offset. Each field within its range (year 0001-9999, month 01-12, day 01-31, hour 00-23,
#: minute 00-59, second 00-60, offset up to 23:59); a day the month does not have
#: (``2026-02-30``) fits and is refused by :func:`parse_time`.
DATE_PATTERN = (
    r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])"
    r"-(0[1-9]|[12][0-9]|3[01])"
    r"([Tt ]([01][0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]|60)(\.([0-9]+))?)?"
    r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?$"
)
#: An IANA time zone name such as ``Europe/Copenhagen`` or ``UTC``.
TZ_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
DEFAULT_LIMIT = 50_000
MAX_LIMIT = 500_000
FORMATS = ("json", "csv")

_METER = re.compile(METER_PATTERN)
_DATE = re.compile(DATE_PATTERN)
_TZ = re.compile(TZ_PATTERN)


class BadParameter(UsageError):
    """A request parameter is not acceptable; ``name`` says which."""

    kind = "bad_parameter"

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


def check_query(pairs: Iterable[tuple[str, str]], allowed: Collection[str]) -> None:
    """Every query parameter is one the operation knows, and none is given twice."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise BadParameter(name, f"unknown parameter (known: {known})")
        if name in seen:
            raise BadParameter(name, "given more than once")
        seen.add(name)


def parse_meter(value: str) -> str:
    if not _METER.match(value):
        raise BadParameter(
            "meter", f"{value!r} is not a meter name (letters, digits, '_', '.', ':', '-'; 1-64)"
        )
    return value


def parse_time(name: str, value: str | None, zone: tzinfo = UTC) -> datetime | None:
    """An ISO date (its midnight) or date-time; without an offset it is taken in ``zone``.

    A leap second (``:60``) counts as ``:59``; digits of a second past the microsecond are
    dropped; times beyond what Python can hold in UTC are clamped to its first or last instant.
    """
    if value is None:
        return None
    m = _DATE.match(value)
    if not m:
        raise BadParameter(name, f"{value!r} is not an ISO 8601 date or date-time")
    year, month, day, _, hour, minute, _, second, _, fraction, offset = m.groups()
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            min(int(second or 0), 59),
            int((fraction or "0")[:6].ljust(6, "0")),
        )
        if offset and offset not in "Zz":
            sign = 1 if offset[0] == "+" else -1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError(f"offset {offset} out of range")
            parsed = parsed.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
        elif offset:
            parsed = parsed.replace(tzinfo=UTC)
    except ValueError as exc:
        raise BadParameter(name, f"{value!r} is not a valid date: {exc}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if parsed.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


def parse_bucket(value: str | None) -> Bucket:
    if value is None:
        return Bucket.DAY
    try:
        return Bucket(value)
    except ValueError as exc:
        choices = ", ".join(b.value for b in Bucket)
        raise BadParameter("bucket", f"{value!r} is not one of {choices}") from exc


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def zone_names() -> list[str]:
    """The IANA zone names this system knows (its tz database), sorted."""
    return sorted(_zones())


def parse_zone(value: str | None) -> tzinfo:
    if value is None or value == "UTC":
        return UTC
    if not _TZ.match(value) or value not in _zones():
        raise BadParameter("tz", f"{value!r} is not a known time zone name")
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise BadParameter("tz", f"unknown time zone {value!r}") from exc


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit():
        raise BadParameter("limit", f"{value!r} is not a whole number")
    limit = int(value)
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter("limit", f"{limit} is outside 1..{MAX_LIMIT}")
    return limit


def parse_format(value: str | None) -> str:
    if value is None:
        return "json"
    if value not in FORMATS:
        raise BadParameter("format", f"{value!r} is not one of {', '.join(FORMATS)}")
    return value
