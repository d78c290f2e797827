"""Loads: the power a meter sees over time, and its exact integral.

A load answers two questions: ``power_kw(at)`` (the power at an instant) and
``energy_kwh(start, end)`` (the energy between two instants, the integral of the power). The
loads here also answer ``energy_kwh_exact(start, end)`` as a :class:`~fractions.Fraction`,
integrated analytically (piecewise-constant or piecewise-linear power, integrated segment by
segment), so that the meter model keeps exact energy: advancing in many small steps gives
exactly what one big step gives. Any object with ``power_kw`` and ``energy_kwh`` can serve as
a load; the model then uses the float integral.

- :class:`ConstantLoad`: the same power all the time.
- :class:`HouseholdLoad`: a realistic, deterministic daily profile of a household (night base
  load, a morning and an evening peak, later mornings and busier middays at weekends) with a
  seeded day-to-day variation, piecewise linear between whole hours of local time.
- :class:`CsvLoad`: a replayed series of timestamps and kW, from a CSV file or from rows.

Times are aware datetimes (naive ones are taken as UTC), integrated at the microsecond
resolution of :class:`datetime.datetime`.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import itertools
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kamstrup382.clock import utc
from kamstrup382.emulator.tariff import local_instant
from kamstrup382.errors import ConfigError, UsageError

__all__ = [
    "ConstantLoad",
    "CsvLoad",
    "ExactLoad",
    "HouseholdLoad",
    "Interpolation",
    "Load",
    "Power",
    "exact_energy_kwh",
    "from_us",
    "parse_load",
    "to_us",
]

#: Microseconds in an hour: kW x microseconds / US_PER_HOUR = kWh.
US_PER_HOUR = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

Power = int | float | Decimal | Fraction | str
Interpolation = Literal["step", "linear"]


def to_us(at: datetime) -> int:
    """``at`` as whole microseconds since 1970-01-01 UTC (naive = UTC)."""
    return (utc(at) - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _kw(value: Power, what: str) -> Fraction:
    """An exact power from an int, Decimal, Fraction, str or float (floats by their repr)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{what}: {value} kW is not a finite number")
    try:
        if isinstance(value, Fraction):
            exact = value
        elif isinstance(value, float):
            exact = Fraction(Decimal(repr(value)))
        elif isinstance(value, (int, Decimal)):
            exact = Fraction(value)
        else:
            exact = Fraction(Decimal(value.strip()))
    except (InvalidOperation, ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise UsageError(f"{what}: {value!r} is not a power in kW") from exc
    if exact < 0:
        raise UsageError(f"{what}: {value} kW is negative (the meter counts imported energy)")
    return exact


@runtime_checkable
class Load(Protocol):
    """What the meter model needs from a load."""

    def power_kw(self, at: datetime) -> float:
        """The power at ``at`` in kW."""

    def energy_kwh(self, start: datetime, end: datetime) -> float:
        """The energy between ``start`` and ``end`` (``start <= end``) in kWh."""


@runtime_checkable
class ExactLoad(Load, Protocol):
    """A load that integrates exactly (all loads of this module)."""

    def energy_kwh_exact(self, start: datetime, end: datetime) -> Fraction:
        """The energy between ``start`` and ``end`` in kWh, exactly."""


def exact_energy_kwh(load: Load, start: datetime, end: datetime) -> Fraction:
    """The load's energy between two instants, exactly if the load can, else its float."""
    value: object
    if isinstance(load, ExactLoad):
        value = load.energy_kwh_exact(start, end)
    else:
        energy = load.energy_kwh(start, end)
        number = isinstance(energy, (int, float)) and not isinstance(energy, bool)
        value = Fraction(energy) if number and math.isfinite(energy) else energy
    if not isinstance(value, Fraction) or value < 0:
        raise UsageError(f"load {load!r} gave {value} kWh for {start}..{end}")
    return value


def _check_order(start: datetime, end: datetime) -> tuple[int, int]:
    a, b = to_us(start), to_us(end)
    if b < a:
        raise UsageError(f"energy asked for {start}..{end}: the end is before the start")
    return a, b


class ConstantLoad:
    """The same power all the time: ``ConstantLoad(2.5)`` draws 2.5 kW."""

    def __init__(self, kw: Power) -> None:
        self.kw = _kw(kw, "ConstantLoad")

    def __repr__(self) -> str:
        return f"ConstantLoad({float(self.kw)!r})"

    @property
    def max_kw(self) -> Fraction:
        """The highest power this load ever draws."""
        return self.kw

    def power_kw(self, at: datetime) -> float:
        return float(self.kw)

    def energy_kwh_exact(self, start: datetime, end: datetime) -> Fraction:
        a, b = _check_order(start, end)
        return self.kw * (b - a) / US_PER_HOUR

    def energy_kwh(self, start: datetime, end: datetime) -> float:
        return float(self.energy_kwh_exact(start, end))


@dataclass(frozen=True)
class _Curve:
    """Power given at knots (``times`` in microseconds, strictly increasing, >= 2 knots).

    ``step``: ``values[i]`` holds on ``[times[i], times[i+1])``; ``linear``: straight lines
    between knots. Defined on ``[times[0], times[-1]]``; ``cumulative[i]`` is the integral in
    kW x microseconds from ``times[0]`` to ``times[i]``. The values are kept as integers over
    one common denominator (``numerators[i] / denominator``) so that an integral costs one
    fraction, not a dozen.
    """

    times: tuple[int, ...]
    values: tuple[Fraction, ...]
    interpolation: Interpolation
    cumulative: tuple[Fraction, ...]
    numerators: tuple[int, ...]
    denominator: int

    @classmethod
    def build(
        cls, times: Sequence[int], values: Sequence[Fraction], interpolation: Interpolation
    ) -> _Curve:
        cumulative = [Fraction(0)]
        for i in range(len(times) - 1):
            width = times[i + 1] - times[i]
            if interpolation == "step":
                cumulative.append(cumulative[-1] + values[i] * width)
            else:
                cumulative.append(cumulative[-1] + (values[i] + values[i + 1]) * width / 2)
        denominator = math.lcm(*(v.denominator for v in values))
        numerators = tuple(v.numerator * (denominator // v.denominator) for v in values)
        return cls(
            tuple(times), tuple(values), interpolation, tuple(cumulative), numerators, denominator
        )

    @property
    def start(self) -> int:
        return self.times[0]

    @property
    def end(self) -> int:
        return self.times[-1]

    def _segment(self, x: int) -> int:
        return min(max(bisect.bisect_right(self.times, x) - 1, 0), len(self.times) - 2)

    def value(self, x: int) -> Fraction:
        """The power at ``x`` (inside the curve; at the last knot, the last knot's value)."""
        if x >= self.end:
            return self.values[-1]
        i = self._segment(x)
        if self.interpolation == "step":
            return self.values[i]
        t0, t1 = self.times[i], self.times[i + 1]
        return self.values[i] + (self.values[i + 1] - self.values[i]) * (x - t0) / (t1 - t0)

    def integral_to(self, x: int) -> Fraction:
        """kW x microseconds from the first knot to ``x`` (``start <= x <= end``)."""
        i = self._segment(x)
        dt = x - self.times[i]
        n = self.numerators
        if self.interpolation == "step":
            return self.cumulative[i] + Fraction(n[i] * dt, self.denominator)
        # the trapezoid from times[i] to x: dt * (v_i + v(x)) / 2, v(x) on the line to v_i+1
        width = self.times[i + 1] - self.times[i]
        area = dt * (2 * n[i] * width + (n[i + 1] - n[i]) * dt)
        return self.cumulative[i] + Fraction(area, 2 * width * self.denominator)

    def integral(self, a: int, b: int) -> Fraction:
        return self.integral_to(b) - self.integral_to(a)


# A household's power by hour of day (kW at 00:00, 01:00, ..., 24:00), interpolated linearly.
# Weekdays: low night base load (fridge, standby), a morning peak around 07:00, a quiet day,
# the evening peak of cooking and lights around 18:00, winding down towards midnight.
# fmt: off
_WEEKDAY_KW = (
    "0.30", "0.26", "0.24", "0.23", "0.23", "0.26",  # 00:00 - 05:00
    "0.50", "1.30", "1.05", "0.50", "0.38", "0.36",  # 06:00 - 11:00
    "0.48", "0.42", "0.36", "0.40", "0.62", "1.45",  # 12:00 - 17:00
    "2.20", "1.95", "1.45", "1.10", "0.80", "0.48",  # 18:00 - 23:00
    "0.30",                                          # 24:00
)
# Weekends: a later, broader morning, people at home at midday, the same evening peak.
_WEEKEND_KW = (
    "0.34", "0.29", "0.25", "0.23", "0.23", "0.23",  # 00:00 - 05:00
    "0.26", "0.40", "0.85", "1.35", "1.25", "0.95",  # 06:00 - 11:00
    "1.10", "0.90", "0.70", "0.65", "0.80", "1.40",  # 12:00 - 17:00
    "2.10", "1.90", "1.50", "1.20", "0.95", "0.60",  # 18:00 - 23:00
    "0.34",                                          # 24:00
)
# fmt: on


class HouseholdLoad:
    """A household's day: deterministic, realistic, piecewise linear between whole hours.

    The profile (17.3 kWh on a weekday, 20.4 kWh on a Saturday or Sunday) is given at each whole
    hour of local time in ``zone`` and interpolated linearly in between, so its integral is
    exact. Each day is multiplied by ``scale`` and by a factor between 0.85 and 1.15 drawn from
    ``seed`` and the date (a hash, so the same seed gives the same days on every run and
    platform). The power can jump at midnight, where one day's factor gives way to the next.
    """

    _CACHE_DAYS = 64

    def __init__(self, seed: int = 0, *, scale: Power = 1, zone: tzinfo = UTC) -> None:
        self.seed = seed
        self.scale = _kw(scale, "HouseholdLoad scale")
        self.zone = zone
        self._weekday = tuple(Fraction(Decimal(v)) for v in _WEEKDAY_KW)
        self._weekend = tuple(Fraction(Decimal(v)) for v in _WEEKEND_KW)
        self._days: dict[date, _Curve] = {}
        self._days_lock = threading.Lock()  # one load may serve several meters and threads

    def __repr__(self) -> str:
        return f"HouseholdLoad(seed={self.seed!r}, scale={float(self.scale)!r}, zone={self.zone})"

    @property
    def max_kw(self) -> Fraction:
        """The highest power this load ever draws: the highest knot at the highest factor."""
        return max(*self._weekday, *self._weekend) * Fraction(115, 100) * self.scale

    def day_factor(self, day: date) -> Fraction:
        """The seeded factor of ``day``: 0.85 to 1.15 in steps of 0.01."""
        digest = hashlib.blake2b(f"{self.seed}:{day.isoformat()}".encode(), digest_size=8)
        return Fraction(85 + int.from_bytes(digest.digest(), "big") % 31, 100)

    def profile_kw(self, day: date) -> tuple[Fraction, ...]:
        """The 25 hourly knots (00:00 to 24:00) of ``day`` in kW, factor and scale applied."""
        base = self._weekend if day.weekday() >= 5 else self._weekday
        factor = self.day_factor(day) * self.scale
        return tuple(v * factor for v in base)

    def _curve(self, day: date) -> _Curve:
        curve = self._days.get(day)
        if curve is None:
            times: list[int] = []
            values: list[Fraction] = []
            for hour, kw in enumerate(self.profile_kw(day)):
                t = to_us(local_instant(day, hour * 3600, self.zone))
                if times and t <= times[-1]:  # an hour skipped by daylight-saving time
                    values[-1] = kw
                    continue
                times.append(t)
                values.append(kw)
            curve = _Curve.build(times, values, "linear")
            with self._days_lock:
                if len(self._days) >= self._CACHE_DAYS:
                    self._days.pop(next(iter(self._days)))
                self._days[day] = curve
        return curve

    def _day_of(self, us: int) -> date:
        return from_us(us).astimezone(self.zone).date()

    def power_kw_exact(self, at: datetime) -> Fraction:
        us = to_us(at)
        return self._curve(self._day_of(us)).value(us)

    def power_kw(self, at: datetime) -> float:
        return float(self.power_kw_exact(at))

    def energy_kwh_exact(self, start: datetime, end: datetime) -> Fraction:
        a, b = _check_order(start, end)
        total = Fraction(0)
        day = self._day_of(a)
        while True:
            curve = self._curve(day)
            lo, hi = max(a, curve.start), min(b, curve.end)
            if lo < hi:
                total += curve.integral(lo, hi)
            if curve.end >= b:
                break
            day += timedelta(days=1)
        return total / US_PER_HOUR

    def energy_kwh(self, start: datetime, end: datetime) -> float:
        return float(self.energy_kwh_exact(start, end))


def _is_number(text: str) -> bool:
    try:
        Decimal(text.strip())
    except InvalidOperation:
        return False
    return True


def _parse_timestamp(text: str) -> datetime:
    """ISO 8601 (naive = UTC, ``Z`` allowed) or Unix seconds; ValueError if neither."""
    text = text.strip()
    if _is_number(text):
        try:
            return from_us(round(Decimal(text) * 1_000_000))
        except (ValueError, OverflowError, InvalidOperation) as exc:
            raise ValueError(f"{text!r} is not a time") from exc
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return utc(datetime.fromisoformat(text))


class CsvLoad:
    """A replayed series of ``(timestamp, kW)``: from a CSV file or from rows.

    The file has two columns, a timestamp (ISO 8601, naive = UTC, or Unix seconds) and the
    power in kW (decimal point), UTF-8 with or without a byte-order mark. Empty lines and lines
    starting with ``#`` are skipped; a first line with neither a timestamp nor a number is taken
    as a header. Timestamps must increase strictly. Errors are :class:`ConfigError` naming the
    file and line.

    ``interpolation="step"`` (the default): each row's power holds until the next row's
    timestamp. ``"linear"``: straight lines between rows.

    ``repeat=False``: before the first row the power is 0, after the last row the last row's
    power holds. ``repeat=True``: the series repeats forever (and backwards) with the period
    from the first to the last timestamp; the last row then only closes the period (in step
    mode its power is not used, in linear mode it is the end point of the last line).
    """

    def __init__(
        self,
        source: str | Path | Iterable[tuple[datetime, Power]],
        *,
        interpolation: Interpolation = "step",
        repeat: bool = False,
    ) -> None:
        if interpolation not in ("step", "linear"):
            raise UsageError(
                f"CsvLoad interpolation must be 'step' or 'linear', got {interpolation!r}"
            )
        self.interpolation: Interpolation = interpolation
        self.repeat = repeat
        if isinstance(source, (str, Path)):
            self.source = str(source)
            rows = self._read(Path(source))
        else:
            self.source = "rows"
            rows = []
            for number, (at, kw) in enumerate(source, start=1):
                rows.append((number, to_us(at), _kw(kw, f"CsvLoad row {number}")))
        self._check(rows)
        times = [t for _, t, _ in rows]
        values = [kw for _, _, kw in rows]
        if len(rows) == 1:  # a single row: that power from then on
            times.append(times[0] + 1)
            values.append(values[0])
        self._curve = _Curve.build(times, values, interpolation)

    def __repr__(self) -> str:
        return (
            f"CsvLoad({self.source!r}, interpolation={self.interpolation!r}, repeat={self.repeat})"
        )

    @property
    def max_kw(self) -> Fraction:
        """The highest power this load ever draws: its highest row (a line between two rows
        never rises above both)."""
        return max(self._curve.values)

    def _error(self, line: int, problem: str) -> ConfigError:
        return ConfigError(f"load {self.source} line {line}", problem)

    def _read(self, path: Path) -> list[tuple[int, int, Fraction]]:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"load {path}", f"cannot read the CSV file: {exc}") from exc
        rows: list[tuple[int, int, Fraction]] = []
        first = True
        for number, fields in enumerate(csv.reader(text.splitlines()), start=1):
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            if len(fields) != 2:
                raise self._error(number, f"expected 2 columns (timestamp, kW), got {len(fields)}")
            try:
                at = _parse_timestamp(fields[0])
            except ValueError as exc:
                if first and not _is_number(fields[1]):
                    first = False
                    continue  # a header: neither a timestamp nor a power
                raise self._error(number, f"bad timestamp {fields[0].strip()!r}") from exc
            first = False
            try:
                kw = _kw(fields[1], "kW")
            except UsageError as exc:
                raise self._error(number, f"bad power {fields[1].strip()!r}: {exc}") from exc
            rows.append((number, to_us(at), kw))
        return rows

    def _check(self, rows: Sequence[tuple[int, int, Fraction]]) -> None:
        if not rows:
            raise ConfigError(f"load {self.source}", "no rows of timestamp and kW")
        if self.repeat and len(rows) < 2:
            raise ConfigError(f"load {self.source}", "repeat needs at least two rows (a period)")
        for (_, before, _), (number, at, _) in itertools.pairwise(rows):
            if at <= before:
                raise self._error(
                    number, f"timestamp {from_us(at).isoformat()} is not after the row before"
                )

    @property
    def period(self) -> timedelta | None:
        """The repeat period (first to last timestamp), or None when not repeating."""
        if not self.repeat:
            return None
        return timedelta(microseconds=self._curve.end - self._curve.start)

    def _fold(self, us: int) -> int:
        """A repeating series: the position of ``us`` inside the first period."""
        c = self._curve
        return c.start + (us - c.start) % (c.end - c.start)

    def power_kw_exact(self, at: datetime) -> Fraction:
        us = to_us(at)
        c = self._curve
        if self.repeat:
            return c.value(self._fold(us))
        if us < c.start:
            return Fraction(0)
        return c.value(us)

    def power_kw(self, at: datetime) -> float:
        return float(self.power_kw_exact(at))

    def _integral_to(self, us: int) -> Fraction:
        """kW x microseconds from the first row (negative before it) to ``us``."""
        c = self._curve
        if self.repeat:
            period = c.end - c.start
            cycles, rest = divmod(us - c.start, period)
            return cycles * c.cumulative[-1] + c.integral_to(c.start + rest)
        if us <= c.start:
            return Fraction(0)
        if us <= c.end:
            return c.integral_to(us)
        return c.cumulative[-1] + c.values[-1] * (us - c.end)

    def energy_kwh_exact(self, start: datetime, end: datetime) -> Fraction:
        a, b = _check_order(start, end)
        return (self._integral_to(b) - self._integral_to(a)) / US_PER_HOUR

    def energy_kwh(self, start: datetime, end: datetime) -> float:
        return float(self.energy_kwh_exact(start, end))


_LOAD_OPTIONS = {
    "constant": {"kw"},
    "household": {"seed", "scale", "zone"},
    "csv": {"interpolation", "repeat"},
}


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("load", f"unknown time zone {name!r}") from exc


def parse_load(text: str) -> ConstantLoad | HouseholdLoad | CsvLoad:
    """A load from its short text form (``k382 emulate --load``).

    - ``2.5`` or ``constant:2.5`` (or ``constant:kw=2.5``): a constant 2.5 kW;
    - ``household`` or ``household:seed=3,scale=1.5,zone=Europe/Copenhagen``
      (``household:3`` for a seed alone);
    - ``csv:PATH`` with options ``,interpolation=linear`` and ``,repeat=yes``; a bare path
      ending in ``.csv`` also works. The path may not contain a comma.

    Raises :class:`ConfigError` with key ``load`` (or naming the CSV line).
    """
    text = text.strip()
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if not rest and kind not in _LOAD_OPTIONS:
        if text.lower().endswith(".csv"):
            kind, rest = "csv", text
        else:
            kind, rest = "constant", text
    if kind not in _LOAD_OPTIONS:
        raise ConfigError(
            "load", f"{text!r}: expected KW, constant:KW, household[:OPTIONS] or csv:PATH"
        )
    parts = [p.strip() for p in rest.split(",")] if rest.strip() else []
    positional = None
    if parts and "=" not in parts[0]:
        positional = parts.pop(0)
    options: dict[str, str] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in _LOAD_OPTIONS[kind] or key in options:
            allowed = ", ".join(sorted(_LOAD_OPTIONS[kind]))
            raise ConfigError("load", f"{text!r}: bad option {part!r} for {kind} ({allowed})")
        options[key] = value.strip()
    try:
        if kind == "constant":
            kw = options.get("kw", positional)
            if kw is None:
                raise ConfigError("load", f"{text!r}: constant needs a power in kW")
            return ConstantLoad(kw)
        if kind == "household":
            seed_text = options.get("seed", positional or "0")
            try:
                seed = int(seed_text)
            except ValueError as exc:
                raise ConfigError("load", f"{text!r}: seed {seed_text!r} is not an int") from exc
            zone = _zone(options["zone"]) if "zone" in options else UTC
            return HouseholdLoad(seed, scale=options.get("scale", "1"), zone=zone)
        if positional is None:
            raise ConfigError("load", f"{text!r}: csv needs a file path")
        interpolation = options.get("interpolation", "step")
        if interpolation not in ("step", "linear"):
            raise ConfigError("load", f"{text!r}: interpolation must be step or linear")
        repeat_text = options.get("repeat", "no").lower()
        if repeat_text not in ("yes", "no", "true", "false", "1", "0"):
            raise ConfigError("load", f"{text!r}: repeat must be yes or no")
        return CsvLoad(
            positional,
            interpolation="linear" if interpolation == "linear" else "step",
            repeat=repeat_text in ("yes", "true", "1"),
        )
    except ConfigError:
        raise
    except UsageError as exc:
        raise ConfigError("load", f"{text!r}: {exc}") from exc
