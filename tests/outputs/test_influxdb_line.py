"""Line protocol: escaping, types and times, read back by a reader of our own and by a real
InfluxDB; what it cannot say is refused; a reading's point."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from kamstrup382.outputs.influxdb_line import (
    FieldValue,
    Point,
    encode_lines,
    encode_point,
    escape_key,
    escape_measurement,
    string_field,
    timestamp,
)
from kamstrup382.outputs.influxdb_series import FIELDS, reading_point
from tests.fixtures.influxdb import InfluxServer

from .helpers import reading
from .line_protocol import parse_body, parse_line

# what a name may hold: anything printable but a backslash (see the module's documentation)
NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\\x7f")
names = st.text(NAME_CHARS, min_size=1, max_size=12).filter(lambda n: n != "time")
measurements = names.filter(lambda n: not n.startswith("#"))
field_values: st.SearchStrategy[FieldValue] = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    # any text but a line break (refused: see test_what_line_protocol_cannot_say_is_refused)
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=20),
)
points = st.builds(
    Point,
    measurement=measurements,
    tags=st.dictionaries(names, names, max_size=4),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=5),
    time=st.integers(min_value=-(2**62), max_value=2**62),
)


@given(points)
def test_a_point_reads_back_as_it_was(point: Point) -> None:
    line = encode_point(point)
    assert "\n" not in line
    again = parse_line(line)
    assert again.measurement == point.measurement
    assert dict(again.tags) == dict(point.tags)
    assert dict(again.fields) == dict(point.fields)
    assert type(again.fields) is dict and all(
        type(again.fields[k]) is type(v) for k, v in point.fields.items()
    )
    assert again.time == point.time


@given(st.lists(points, max_size=5))
def test_a_body_is_one_line_per_point(batch: list[Point]) -> None:
    """Each point's line ends in a line break (string fields may hold one: InfluxDB reads it
    as part of the string, see the real server's test below)."""
    body = encode_lines(batch).decode("utf-8")
    assert [(p.measurement, p.time) for p in parse_body(body)] == [
        (p.measurement, p.time) for p in batch
    ]


def test_escapes_as_influxdb_describes() -> None:
    assert escape_measurement("my meas,ure ment") == r"my\ meas\,ure\ ment"
    assert escape_measurement("a=b") == "a=b"  # = needs no escape in a measurement
    assert escape_key("tag key,=x") == r"tag\ key\,\=x"
    assert string_field('say "hi" \\ there') == r'"say \"hi\" \\ there"'
    point = Point("m", {"b": "2", "a": "1"}, {"i": 3, "f": 0.5, "s": "x", "t": True}, 7)
    assert encode_point(point) == 'm,a=1,b=2 i=3i,f=0.5,s="x",t=true 7'


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: escape_measurement(""), "empty"),
        (lambda: escape_measurement("#comment"), "comment"),
        (lambda: escape_key("a\nb"), "control character"),
        (lambda: escape_key("ends\\"), "backslash"),
        (lambda: escape_key("time", "field key"), "not allowed"),
        (lambda: Point("m", {}, {}, 0), "without fields"),
        (lambda: encode_point(Point("m", {}, {"f": math.inf}, 0)), "finite"),
        (lambda: encode_point(Point("m", {}, {"f": 2**63}, 0)), "64 bits"),
        (lambda: encode_point(Point("m", {"k": ""}, {"f": 1}, 0)), "empty tag value"),
        (lambda: encode_point(Point("m", {}, {"s": "two\nlines"}, 0)), "line break"),
        (lambda: timestamp(datetime(2026, 1, 1), "ns"), "timezone"),
    ],
)
def test_what_line_protocol_cannot_say_is_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_times_in_every_precision_exact_to_the_microsecond() -> None:
    at = datetime(2026, 3, 1, 0, 0, 2, 123456, tzinfo=UTC)
    seconds = 1772323202
    assert timestamp(at, "ns") == seconds * 10**9 + 123456000
    assert timestamp(at, "us") == seconds * 10**6 + 123456
    assert timestamp(at, "ms") == seconds * 10**3 + 123
    assert timestamp(at, "s") == seconds
    plus_one = at.astimezone(timezone(timedelta(hours=1)))
    assert timestamp(plus_one, "ns") == timestamp(at, "ns")
    before = datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    assert timestamp(before, "ms") == -500
    assert timestamp(before, "s") == -1  # rounded down, as the precision cuts


def test_a_readings_point() -> None:
    record = reading("house", 3)
    point = reading_point(record, measurement="energy", precision="s", tags={"site": "home"})
    assert point.measurement == "energy"
    assert dict(point.tags) == {
        "site": "home",
        "meter": "house",
        "customer_number": "00054042",
        "type_number": "685-382-OK-15",
    }
    assert point.time == int(record.read_at.timestamp())
    assert [f.key for f in FIELDS] == [
        "energy_kwh",
        "tariff_1_kwh",
        "tariff_2_kwh",
        "tariff_3_kwh",
        "tariff_4_kwh",
        "hour_counter_h",
        "pulse_input",
        "actual_peak_w",
        "last_month_peak_w",
    ]
    assert point.fields["actual_peak_w"] == 18600  # 18.6 kW
    assert point.fields["energy_kwh"] == 33 + 6 + 20 + 3
    assert point.fields["attempts"] == 1
    assert point.fields["duration_s"] == record.duration
    # a 685-382 has no tariffs 3 and 4: no field, never 0
    assert "tariff_3_kwh" not in point.fields and "tariff_4_kwh" not in point.fields
    assert all(type(point.fields[f.key]) is int for f in FIELDS if f.key in point.fields)
    # the same reading is the same point, whenever it is made
    assert encode_point(point) == encode_point(
        reading_point(record, measurement="energy", precision="s", tags={"site": "home"})
    )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(point=points)
def test_a_real_influxdb_reads_what_we_write(influxdb: InfluxServer, point: Point) -> None:
    """The point written to a fresh database comes back with its names, tags, values and
    time (InfluxDB keeps what its types hold: its float is a float64 as ours)."""
    influxdb.query("DROP DATABASE prop")
    influxdb.query("CREATE DATABASE prop")
    status, body = influxdb._request("POST", "/write?db=prop&precision=ns", encode_lines([point]))
    assert status == 204, body
    [series] = influxdb.query("SELECT * FROM /.*/ GROUP BY *", "prop")
    assert series["name"] == point.measurement
    assert (series.get("tags") or {}) == dict(point.tags)
    [values] = series["values"]
    row = dict(zip(series["columns"], values, strict=True))
    assert row.pop("time") == point.time
    # a field key equal to a tag key comes back renamed (key_1): compare the values, as JSON
    # gives them (a float without decimals reads as an integer: 2.2e16 as 22000000000000000)
    returned = list(row.values())
    note(f"wrote {encode_lines([point])!r}, read {series!r}")
    for value in point.fields.values():
        match = next(i for i, r in enumerate(returned) if _same(r, value))
        del returned[match]
    assert returned == []


def _same(returned: object, value: FieldValue) -> bool:
    if isinstance(returned, bool) or isinstance(value, bool):
        return returned is value
    if isinstance(value, float) and isinstance(returned, int):
        return float(returned) == value
    return returned == value
