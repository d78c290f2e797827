"""Loads: power over time and its exact integral."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.emulator import ConstantLoad, CsvLoad, HouseholdLoad, Load, parse_load
from kamstrup382.emulator.load import ExactLoad, Power, exact_energy_kwh
from kamstrup382.errors import ConfigError, UsageError

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def midpoint_integral(
    load: HouseholdLoad, start: datetime, end: datetime, step: timedelta
) -> Fraction:
    """Sum of power x step at each step's middle, exact (the power is read as a Fraction).

    For power that is linear inside each step this is the exact integral.
    """
    total = Fraction(0)
    t = start
    while t < end:
        total += load.power_kw_exact(t + step / 2) * Fraction(step // US, 3_600_000_000)
        t += step
    return total


# -- ConstantLoad ---------------------------------------------------------------------------


def test_constant_load_is_exact() -> None:
    load = ConstantLoad(0.1)  # by its decimal repr: 0.1 kW exactly, not the binary float
    assert load.energy_kwh_exact(T0, T0 + 10 * HOUR) == 1
    assert load.energy_kwh_exact(T0, T0 + US) == Fraction(1, 36_000_000_000)
    assert load.energy_kwh(T0, T0 + 90 * timedelta(minutes=1)) == 0.15
    assert load.power_kw(T0) == 0.1
    assert ConstantLoad(Decimal("2.5")).energy_kwh_exact(T0, T0 + HOUR) == Fraction(5, 2)
    assert ConstantLoad("3").energy_kwh_exact(T0, T0 + 2 * HOUR) == 6
    assert ConstantLoad(Fraction(1, 3)).energy_kwh_exact(T0, T0 + 3 * HOUR) == 1
    assert isinstance(load, Load)


@pytest.mark.parametrize(
    "kw", [-1, float("nan"), float("inf"), "abc", "-0.5", "Infinity", Decimal("NaN"), None]
)
def test_constant_load_rejects_bad_power(kw: object) -> None:
    with pytest.raises(UsageError, match="ConstantLoad"):
        ConstantLoad(kw)  # type: ignore[arg-type]


def test_energy_of_a_reversed_interval_is_an_error() -> None:
    with pytest.raises(UsageError, match="before the start"):
        ConstantLoad(1).energy_kwh(T0 + HOUR, T0)


def test_a_float_only_load_is_integrated_by_its_float() -> None:
    class Heater:
        def power_kw(self, at: datetime) -> float:
            return 2.0

        def energy_kwh(self, start: datetime, end: datetime) -> float:
            return 2.0 * (end - start) / HOUR

    assert exact_energy_kwh(Heater(), T0, T0 + 3 * HOUR) == 6

    class Broken(Heater):
        def energy_kwh(self, start: datetime, end: datetime) -> float:
            return -1.0

    with pytest.raises(UsageError, match="gave -1 kWh"):
        exact_energy_kwh(Broken(), T0, T0 + HOUR)

    class NotANumber(Heater):
        def energy_kwh(self, start: datetime, end: datetime) -> float:
            return float("nan")

    with pytest.raises(UsageError, match="gave nan kWh"):
        exact_energy_kwh(NotANumber(), T0, T0 + HOUR)
    assert not isinstance(Heater(), ExactLoad)
    assert isinstance(ConstantLoad(1), ExactLoad)


# -- HouseholdLoad --------------------------------------------------------------------------


@pytest.mark.parametrize("day", [date(2026, 1, 5), date(2026, 1, 10), date(2026, 6, 14)])
def test_household_daily_energy_is_the_integral_of_its_power(day: date) -> None:
    load = HouseholdLoad(seed=7)
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    exact = load.energy_kwh_exact(start, end)
    # knots at whole hours: the power is linear inside every minute, so the midpoint sum is exact
    assert exact == midpoint_integral(load, start, end, timedelta(minutes=1))
    assert load.energy_kwh(start, end) == pytest.approx(float(exact), rel=1e-12)
    # and the float power agrees with the exact one
    assert load.power_kw(start + 7 * HOUR) == float(load.power_kw_exact(start + 7 * HOUR))


def test_household_daily_energy_equals_profile_times_factor() -> None:
    load = HouseholdLoad(seed=3, scale=2)
    day = date(2026, 1, 7)
    knots = load.profile_kw(day)
    trapezoids = sum((knots[h] + knots[h + 1]) / 2 for h in range(24))
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    assert load.energy_kwh_exact(start, start + timedelta(days=1)) == trapezoids
    weekday_base = Fraction("17.32")  # the weekday profile's own daily energy
    assert trapezoids == weekday_base * 2 * load.day_factor(day)


def test_household_shape_is_a_household() -> None:
    load = HouseholdLoad(seed=0)
    monday = datetime(2026, 1, 5, tzinfo=UTC)
    power = [load.power_kw(monday + h * HOUR) for h in range(24)]
    night = min(power[0:6])
    morning = max(power[6:10])
    midday = min(power[10:16])
    evening = max(power[16:22])
    assert night < 0.35 * morning and morning > midday and evening > morning
    assert power.index(evening) in range(17, 21)
    saturday = datetime(2026, 1, 10, tzinfo=UTC)
    sat = [load.power_kw(saturday + h * HOUR) for h in range(24)]
    assert sat.index(max(sat[6:14])) > power.index(morning)  # a later morning at weekends


def test_household_is_deterministic_and_seeded() -> None:
    a, b, c = HouseholdLoad(seed=1), HouseholdLoad(seed=1), HouseholdLoad(seed=2)
    week = [T0 + timedelta(days=d) for d in range(7)]
    energy = [a.energy_kwh_exact(d, d + timedelta(days=1)) for d in week]
    assert energy == [b.energy_kwh_exact(d, d + timedelta(days=1)) for d in week]
    assert energy != [c.energy_kwh_exact(d, d + timedelta(days=1)) for d in week]
    factors = {a.day_factor(d.date()) for d in week}
    assert len(factors) > 1
    assert all(Fraction(85, 100) <= f <= Fraction(115, 100) for f in factors)


def test_household_over_many_days_matches_day_sums() -> None:
    load = HouseholdLoad(seed=5)
    start = T0 + timedelta(hours=5, minutes=3)
    end = start + timedelta(days=40, hours=7)
    pieces = Fraction(0)
    t = start
    while t < end:
        nxt = min(end, t + timedelta(hours=13, minutes=17))
        pieces += load.energy_kwh_exact(t, nxt)
        t = nxt
    assert load.energy_kwh_exact(start, end) == pieces


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_household_in_a_zone_over_daylight_saving_days(day: date) -> None:
    """A 23- and a 25-hour day: the day's energy is still the integral of its power."""
    zone = ZoneInfo("Europe/Copenhagen")
    load = HouseholdLoad(seed=1, zone=zone)
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(
        UTC
    )
    assert (end - start) in (timedelta(hours=23), timedelta(hours=25))
    exact = load.energy_kwh_exact(start, end)
    assert exact == midpoint_integral(load, start, end, timedelta(minutes=1))
    # the local morning peak is at local time
    local_7 = datetime.combine(day, datetime.min.time().replace(hour=7), tzinfo=zone)
    assert load.power_kw(local_7) == pytest.approx(float(load.profile_kw(day)[7]))


@settings(max_examples=150, deadline=None)
@given(
    a=st.integers(0, 20 * 24 * 3600 * 10**6),
    b=st.integers(0, 20 * 24 * 3600 * 10**6),
    c=st.integers(0, 20 * 24 * 3600 * 10**6),
    zone=st.sampled_from([UTC, ZoneInfo("Europe/Copenhagen"), ZoneInfo("America/St_Johns")]),
)
def test_household_energy_is_additive(a: int, b: int, c: int, zone: ZoneInfo) -> None:
    load = HouseholdLoad(seed=11, zone=zone)
    x, y, z = sorted((a, b, c))
    base = datetime(2026, 3, 20, tzinfo=UTC)
    first = load.energy_kwh_exact(base + x * US, base + y * US)
    second = load.energy_kwh_exact(base + y * US, base + z * US)
    assert first + second == load.energy_kwh_exact(base + x * US, base + z * US)
    assert first >= 0 and second >= 0


# -- CsvLoad --------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "load.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_step_mode(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# a comment\ntimestamp,kw\n"
        "2026-01-05T00:00:00Z,1.0\n\n2026-01-05T01:00:00,3\n2026-01-05T03:30:00+01:00,0.5\n",
    )
    load = CsvLoad(path)
    # 00:00-01:00 at 1 kW, 01:00-02:30 at 3 kW, then 0.5 kW for ever; 0 before the first row
    assert load.power_kw(at("2026-01-04T23:59:59")) == 0
    assert load.power_kw(at("2026-01-05T00:59:59")) == 1
    assert load.power_kw(at("2026-01-05T01:00")) == 3
    assert load.power_kw(at("2026-01-05T02:30")) == 0.5
    assert load.power_kw(at("2026-02-05T02:30")) == 0.5
    assert load.energy_kwh_exact(at("2026-01-04T00:00"), at("2026-01-05T04:30")) == Fraction(
        1 + Fraction(9, 2) + 1
    )
    assert load.period is None


def test_csv_byte_order_mark_and_unix_seconds(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff1767571200,2\n1767574800.5,1\n".encode())
    load = CsvLoad(path)  # the first row is data, not a header
    assert load.power_kw(at("2026-01-05T00:00")) == 2
    assert load.power_kw(at("2026-01-05T01:00:00.5")) == 1


def test_csv_linear_mode_from_rows() -> None:
    rows: list[tuple[datetime, Power]] = [
        (at("2026-01-05T00:00"), 0),
        (at("2026-01-05T02:00"), "4"),
        (at("2026-01-05T03:00"), 0),
    ]
    load = CsvLoad(rows, interpolation="linear")
    assert load.power_kw(at("2026-01-05T01:00")) == 2
    assert load.power_kw(at("2026-01-05T02:30")) == 2
    assert load.energy_kwh_exact(at("2026-01-05T00:00"), at("2026-01-05T03:00")) == 6
    assert load.energy_kwh_exact(at("2026-01-05T00:00"), at("2026-01-05T01:00")) == 1
    assert load.energy_kwh_exact(at("2026-01-05T03:00"), at("2026-01-05T05:00")) == 0  # holds 0


def test_csv_repeat(tmp_path: Path) -> None:
    path = write(tmp_path, "0,2\n1800,4\n3600,99\n")  # Unix seconds; the last row closes the period
    load = CsvLoad(path, repeat=True)
    assert load.period == HOUR
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    day = at("2026-01-05T00:00")  # a whole number of hours after the epoch
    assert load.power_kw(day + timedelta(minutes=10)) == 2
    assert load.power_kw(day + timedelta(minutes=40)) == 4
    assert load.power_kw(epoch - timedelta(minutes=10)) == 4  # backwards as well
    assert load.energy_kwh_exact(day, day + 24 * HOUR) == 24 * 3
    assert load.energy_kwh_exact(
        day + timedelta(minutes=45), day + timedelta(hours=2, minutes=15)
    ) == 1 + 3 + Fraction(1, 2)  # 00:45-01:00 at 4 kW, a whole period, 00:00-00:15 at 2 kW
    linear = CsvLoad(path, repeat=True, interpolation="linear")
    assert linear.power_kw(epoch + timedelta(minutes=45)) == pytest.approx(51.5)


def test_csv_single_row_holds() -> None:
    load = CsvLoad([(at("2026-01-05T00:00"), 2)])
    assert load.energy_kwh_exact(at("2026-01-04T00:00"), at("2026-01-05T03:00")) == 6


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("t,kw\n2026-01-05T00:00,1\n2026-01-05T01:00,x\n", 3, "bad power 'x'"),
        ("2026-01-05T00:00,1\nyesterday,1\n", 2, "bad timestamp 'yesterday'"),
        ("2026-01-05T00:00,1\n2026-01-05T00:00,2\n", 2, "is not after the row before"),
        ("2026-01-05T00:00,1\n2026-01-05T01:00,2,3\n", 2, "expected 2 columns"),
        ("2026-01-05T00:00,1\n2026-01-05T01:00,-2\n", 2, "negative"),
        ("# only\n2026-01-05T00:00,1\n\n2026-01-05T01:00,nan\n", 4, "bad power"),
        ("monday,1\n2026-01-05T01:00,1\n", 1, "bad timestamp 'monday'"),
        ("2026-01-05T00:00,1\n1e30,1\n", 2, "bad timestamp '1e30'"),
        ("2026-01-05T00:00,1\ninf,1\n", 2, "bad timestamp 'inf'"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        CsvLoad(path)
    assert info.value.key == f"load {path} line {line}"
    assert problem in info.value.problem


def test_csv_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no rows"):
        CsvLoad(write(tmp_path, "timestamp,kw\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        CsvLoad(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="repeat needs at least two rows"):
        CsvLoad(write(tmp_path, "2026-01-05T00:00,1\n"), repeat=True)
    with pytest.raises(UsageError, match="interpolation"):
        CsvLoad(write(tmp_path, "2026-01-05T00:00,1\n"), interpolation="cubic")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="row 2"):
        CsvLoad([(at("2026-01-05T00:00"), 1), (at("2026-01-05T01:00"), -1)])


@settings(max_examples=100, deadline=None)
@given(
    knots=st.lists(st.tuples(st.integers(1, 10**9), st.integers(0, 5000)), min_size=2, max_size=8),
    interpolation=st.sampled_from(["step", "linear"]),
    repeat=st.booleans(),
    cuts=st.lists(st.integers(-(10**10), 2 * 10**10), min_size=2, max_size=6),
)
def test_csv_energy_is_additive_and_matches_power(
    knots: list[tuple[int, int]], interpolation: str, repeat: bool, cuts: list[int]
) -> None:
    base = at("2026-01-05T00:00")
    t = base
    rows = []
    for gap, watts in knots:
        t += gap * US
        rows.append((t, Fraction(watts, 1000)))
    load = CsvLoad(rows, interpolation=interpolation, repeat=repeat)  # type: ignore[arg-type]
    points = sorted(base + c * US for c in cuts)
    whole = load.energy_kwh_exact(points[0], points[-1])
    parts = sum(
        (load.energy_kwh_exact(x, y) for x, y in itertools.pairwise(points)),
        Fraction(0),
    )
    assert whole == parts >= 0


# -- the text form (k382 emulate --load) ------------------------------------------------------


def test_parse_load_forms(tmp_path: Path) -> None:
    assert parse_load("2.5").energy_kwh_exact(T0, T0 + 2 * HOUR) == 5
    assert parse_load("constant:0.5").energy_kwh_exact(T0, T0 + 2 * HOUR) == 1
    assert parse_load(" constant:kw=3 ").energy_kwh_exact(T0, T0 + HOUR) == 3
    household = parse_load("household")
    assert isinstance(household, HouseholdLoad) and household.seed == 0
    seeded = parse_load("household:seed=4,scale=1.5,zone=Europe/Copenhagen")
    assert isinstance(seeded, HouseholdLoad)
    assert (seeded.seed, seeded.scale, str(seeded.zone)) == (4, Fraction(3, 2), "Europe/Copenhagen")
    same = parse_load("household:4")
    assert isinstance(same, HouseholdLoad) and same.seed == 4
    path = write(tmp_path, "0,2\n3600,4\n7200,0\n")
    csv_load = parse_load(f"csv:{path},interpolation=linear,repeat=yes")
    assert isinstance(csv_load, CsvLoad)
    assert (csv_load.interpolation, csv_load.repeat) == ("linear", True)
    bare = parse_load(str(path))
    assert isinstance(bare, CsvLoad) and (bare.interpolation, bare.repeat) == ("step", False)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("wind:3", "expected KW, constant:KW"),
        ("abc", "not a power"),
        ("constant:", "needs a power"),
        ("-1", "negative"),
        ("household:seed=x", "seed 'x' is not an int"),
        ("household:colour=red", "bad option 'colour=red'"),
        ("household:seed=1,seed=2", "bad option 'seed=2'"),
        ("household:zone=Mars/Olympus", "unknown time zone"),
        ("csv:", "needs a file path"),
        ("csv:x.csv,interpolation=cubic", "step or linear"),
        ("csv:x.csv,repeat=maybe", "yes or no"),
    ],
)
def test_parse_load_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_load(text)
    assert info.value.key == "load"
    assert needle in info.value.problem


def test_parse_load_csv_errors_keep_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "2026-01-05T00:00,1\n2026-01-05T01:00,lots\n")
    with pytest.raises(ConfigError) as info:
        parse_load(f"csv:{path}")
    assert info.value.key == f"load {path} line 2"
