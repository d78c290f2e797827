"""InfluxDB line protocol, encoded here (no client library): points in, bytes out, no I/O.

One line per point::

    measurement,tag1=value1,tag2=value2 field1=12i,field2=0.5,field3="text" 1700000000000000000
    └── name ──┘└──── tags (sorted) ───┘└──────────────── fields ────────────┘└── time ───────┘

Escaping, as InfluxDB 1.x and 2.x parse it (docs.influxdata.com, "Line protocol", "Special
characters"):

- measurement: a backslash before ``,`` and space;
- tag keys, tag values and field keys: a backslash before ``,``, ``=`` and space;
- string field values: in double quotes, a backslash before ``"`` and ``\\``;
- integers end in ``i``; floats are written as Python's ``repr`` (finite only); booleans are
  ``true`` / ``false``; the time is an integer in the write's precision.

What line protocol cannot say is refused (:class:`ValueError`) rather than written wrong: an
empty name, key or tag value (an empty tag value means "no such tag"), a line break or other
control character in a name (it would end the line), a backslash in a name (InfluxDB 1.x reads
``\\`` there as an escaped backslash followed by a separator, and a trailing one escapes the
separator after it: no spelling of it survives), a measurement starting with ``#`` (a comment
line), the key ``time`` (InfluxDB refuses it), a point without fields, a float that is not
finite, a line break in a string field value (line protocol has no escape for it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "PRECISIONS",
    "FieldValue",
    "Point",
    "encode_lines",
    "encode_point",
    "escape_key",
    "escape_measurement",
    "string_field",
    "timestamp",
]

#: A field's value: an integer (``12i``), a float, a string or a boolean.
FieldValue = int | float | str | bool

#: The precisions of the write API (``precision=`` of ``/write``): units of the time per second.
PRECISIONS: Mapping[str, int] = {"ns": 10**9, "us": 10**6, "ms": 10**3, "s": 1}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = (-(2**63), 2**63 - 1)
_UNSAYABLE = re.compile(r"[\x00-\x1f\x7f\\]")
_MEASUREMENT_SPECIAL = re.compile(r"([, ])")
_KEY_SPECIAL = re.compile(r"([,= ])")
#: Anything a key may need escaped or refused for: most keys have none, and go as they are.
_KEY_PLAIN = re.compile(r"[^,= \x00-\x1f\x7f\\]+")


def _check_name(text: str, what: str) -> None:
    if not text:
        raise ValueError(f"line protocol: an empty {what}")
    if _UNSAYABLE.search(text):
        raise ValueError(f"line protocol: a control character or backslash in the {what} {text!r}")


def escape_measurement(name: str) -> str:
    """A measurement name as line protocol writes it."""
    _check_name(name, "measurement")
    if name.startswith("#"):
        raise ValueError(f"line protocol: the measurement {name!r} starts a comment line")
    return _MEASUREMENT_SPECIAL.sub(r"\\\1", name)


def escape_key(text: str, what: str = "key") -> str:
    """A tag key, tag value or field key as line protocol writes it."""
    if _KEY_PLAIN.fullmatch(text) and text != "time":
        return text
    _check_name(text, what)
    if text == "time" and what != "tag value":
        raise ValueError(f"line protocol: {text!r} is not allowed as a {what}")
    return _KEY_SPECIAL.sub(r"\\\1", text)


def string_field(value: str) -> str:
    """A string field value, quoted; a line break in it refused (line protocol has no escape
    for one: InfluxDB's "Line protocol reference")."""
    if "\n" in value:
        raise ValueError(f"line protocol: a line break in the string field value {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field_value(value: FieldValue, key: str) -> str:
    if isinstance(value, bool):  # before int: a bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"line protocol: the field {key!r} is {value}, beyond 64 bits")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"line protocol: the field {key!r} is {value}, not a finite number")
        return repr(value)
    if isinstance(value, str):
        return string_field(value)
    raise TypeError(f"line protocol: the field {key!r} is a {type(value).__name__}")


def timestamp(at: datetime, precision: str) -> int:
    """``at`` (timezone-aware) as an integer time in ``precision`` (``ns``, ``us``, ``ms``,
    ``s``), exact to the microsecond, rounded down below the precision."""
    if at.tzinfo is None:
        raise ValueError(f"line protocol: a time without a timezone: {at.isoformat()}")
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    per_second = PRECISIONS[precision]
    if per_second >= 10**6:
        return micros * (per_second // 10**6)
    return micros // (10**6 // per_second)


@dataclass(frozen=True, slots=True)
class Point:
    """One point: a measurement, its tags, its fields and its time (in the write's precision).

    Two points with the same measurement, tags and time are the same point to InfluxDB: the
    second write replaces the fields of the first (``encode_point`` writes tags sorted, so
    equal points are equal lines).
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time: int

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError(f"line protocol: a point of {self.measurement!r} without fields")


def encode_point(point: Point) -> str:
    """One line (without its line break)."""
    parts = [escape_measurement(point.measurement)]
    for key in sorted(point.tags):
        parts.append(f",{escape_key(key, 'tag key')}={escape_key(point.tags[key], 'tag value')}")
    fields = ",".join(
        f"{escape_key(key, 'field key')}={_field_value(value, key)}"
        for key, value in point.fields.items()
    )
    return f"{''.join(parts)} {fields} {int(point.time)}"


def encode_lines(points: Iterable[Point]) -> bytes:
    """A request body: one line per point, each ending in a line break, UTF-8."""
    return "".join(encode_point(p) + "\n" for p in points).encode("utf-8")
