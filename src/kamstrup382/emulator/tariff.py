"""A time-of-use schedule that drives the tariff input (module pins 1 and 4).

``TariffSchedule.parse("22:00-06:00")`` shorts the input (tariff 2) from 22:00 to 06:00 every
day; several ranges may be given, comma-separated (``"22:00-06:00, 12:00-13:30"``), and
overlapping ranges join. Times are ``HH:MM`` or ``HH:MM:SS`` wall-clock times in the schedule's
zone (UTC unless given); ``24:00`` may end a range; a range whose end is not after its start
runs over midnight.

Inside a range the tariff is 2, outside it is 1. Each range is the half-open interval
``[start, end)``: at exactly 22:00 the tariff is already 2, at exactly 06:00 it is 1 again.

Daylight-saving time: each day's range becomes two UTC instants, the local start and end read
with ``fold=0`` (a time that does not exist in a spring-forward gap is read with the offset
before the change, a time that occurs twice in autumn means its first occurrence).
:meth:`tariff_at` and :meth:`next_boundary` use the same instants, so the model that splits
its integration at the boundaries always agrees with the tariff it reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from kamstrup382.clock import utc
from kamstrup382.errors import ConfigError

__all__ = ["TariffSchedule", "local_instant"]

_DAY = 24 * 3600
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def local_instant(day: date, seconds: int, zone: tzinfo) -> datetime:
    """The UTC instant of wall-clock ``seconds`` after midnight of ``day`` in ``zone``.

    ``seconds`` may be ``86400`` (midnight that ends the day). ``fold=0`` throughout.
    """
    if seconds >= _DAY:
        day += timedelta(days=seconds // _DAY)
        seconds %= _DAY
    wall = datetime.combine(
        day, time(seconds // 3600, seconds // 60 % 60, seconds % 60), tzinfo=zone
    )
    return wall.astimezone(UTC)


def _parse_time(text: str, *, allow_24: bool, where: str) -> int:
    m = _TIME.fullmatch(text.strip())
    if m is None:
        raise ConfigError("tariff_schedule", f"{where}: {text.strip()!r} is not HH:MM or HH:MM:SS")
    hours, minutes, seconds = int(m[1]), int(m[2]), int(m[3] or 0)
    if minutes > 59 or seconds > 59:
        raise ConfigError("tariff_schedule", f"{where}: {text.strip()!r} is not a time of day")
    total = hours * 3600 + minutes * 60 + seconds
    if total > _DAY or (total == _DAY and not allow_24):
        limit = "24:00" if allow_24 else "23:59:59"
        raise ConfigError("tariff_schedule", f"{where}: {text.strip()!r} is after {limit}")
    return total


def _format_time(seconds: int) -> str:
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


@dataclass(frozen=True, slots=True)
class TariffSchedule:
    """Daily ranges of tariff 2, as seconds after local midnight: ``((start, end), ...)``.

    ``end`` may be smaller than ``start`` (the range runs over midnight) and may be 86400.
    """

    ranges: tuple[tuple[int, int], ...]
    zone: tzinfo = UTC

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ConfigError("tariff_schedule", "no range given")
        for start, end in self.ranges:
            if not (0 <= start < _DAY and 0 <= end <= _DAY):
                raise ConfigError("tariff_schedule", f"range {start}-{end} s outside a day")
            if start == end:
                raise ConfigError(
                    "tariff_schedule", f"range {_format_time(start)}-{_format_time(end)} is empty"
                )

    @classmethod
    def parse(cls, text: str, *, zone: tzinfo = UTC) -> TariffSchedule:
        """``"22:00-06:00"`` or several ranges separated by commas; see the module docstring."""
        ranges = []
        parts = text.split(",")
        for number, part in enumerate(parts, start=1):
            where = f"range {number} {part.strip()!r}"
            if part.count("-") != 1:
                raise ConfigError(
                    "tariff_schedule", f"{where}: expected START-END, e.g. 22:00-06:00"
                )
            start_text, end_text = part.split("-")
            start = _parse_time(start_text, allow_24=False, where=where)
            end = _parse_time(end_text, allow_24=True, where=where)
            if start == end:
                raise ConfigError("tariff_schedule", f"{where}: start and end are the same")
            ranges.append((start, end))
        return cls(tuple(ranges), zone)

    def __str__(self) -> str:
        return ",".join(f"{_format_time(s)}-{_format_time(e)}" for s, e in self.ranges)

    def _intervals(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """The UTC intervals of tariff 2 that start on local ``day`` (possibly empty ones)."""
        for start, end in self.ranges:
            stop = end if end > start else end + _DAY
            yield local_instant(day, start, self.zone), local_instant(day, stop, self.zone)

    def _local_date(self, at: datetime) -> date:
        return utc(at).astimezone(self.zone).date()

    def tariff_at(self, at: datetime) -> int:
        """1 or 2: the tariff the input selects at ``at``."""
        at = utc(at)
        today = self._local_date(at)
        for offset in (-1, 0):
            for start, end in self._intervals(today + timedelta(days=offset)):
                if start <= at < end:
                    return 2
        return 1

    def next_boundary(self, after: datetime) -> datetime:
        """The first instant strictly after ``after`` at which a range starts or ends.

        The tariff is constant between two consecutive boundaries.
        """
        after = utc(after)
        today = self._local_date(after)
        best: datetime | None = None
        for offset in (-1, 0, 1, 2):
            for start, end in self._intervals(today + timedelta(days=offset)):
                for instant in (start, end):
                    if instant > after and (best is None or instant < best):
                        best = instant
        assert best is not None  # every day has a range start
        return best
