"""Validation of what a request asks for: meter names, ISO dates, buckets, limits, formats.

Each check raises :class:`BadParameter` naming the parameter and the problem; the app turns it
into a 400 JSON error. The patterns here are the ones the OpenAPI description declares.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, date, datetime, time, tzinfo

from kamstrup382.errors import UsageError
from kamstrup382.web.buckets import Bucket

__all__ = [
    "DATE_PATTERN",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "METER_PATTERN",
    "TZ_PATTERN",
    "BadParameter",
    "parse_bucket",
    "parse_format",
    "parse_limit",
    "parse_meter",
    "parse_time",
    "parse_zone",
]

#: A meter name as it may appear in a URL.
METER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: An ISO 8601 date, or date and time with an optional UTC offset (``Z`` or ``+hh:mm``).
DATE_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
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


def parse_meter(value: str) -> str:
    if not _METER.match(value):
        raise BadParameter(
            "meter", f"{value!r} is not a meter name (letters, digits, '_', '.', '-'; 1-64)"
        )
    return value


def parse_time(name: str, value: str | None, zone: tzinfo = UTC) -> datetime | None:
    """An ISO date (its midnight) or date-time; without an offset it is taken in ``zone``."""
    if value is None or value == "":
        return None
    if not _DATE.match(value):
        raise BadParameter(name, f"{value!r} is not an ISO 8601 date or date-time")
    try:
        if "T" in value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            parsed = datetime.combine(date.fromisoformat(value), time())
    except ValueError as exc:
        raise BadParameter(name, f"{value!r} is not a valid date: {exc}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def parse_bucket(value: str | None) -> Bucket:
    if value is None or value == "":
        return Bucket.DAY
    try:
        return Bucket(value)
    except ValueError as exc:
        choices = ", ".join(b.value for b in Bucket)
        raise BadParameter("bucket", f"{value!r} is not one of {choices}") from exc


def parse_zone(value: str | None) -> tzinfo:
    if value is None or value in {"", "UTC"}:
        return UTC
    if not _TZ.match(value):
        raise BadParameter("tz", f"{value!r} is not a time zone name")
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise BadParameter("tz", f"unknown time zone {value!r}") from exc


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit():
        raise BadParameter("limit", f"{value!r} is not a whole number")
    limit = int(value)
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter("limit", f"{limit} is outside 1..{MAX_LIMIT}")
    return limit


def parse_format(value: str | None) -> str:
    if value is None or value == "":
        return "json"
    if value not in FORMATS:
        raise BadParameter("format", f"{value!r} is not one of {', '.join(FORMATS)}")
    return value
