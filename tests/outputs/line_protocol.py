"""A reader of line protocol for the tests, written from InfluxDB's description of it (not from
our encoder): a backslash escapes the next character in names, keys and tag values, and ``"``
and ``\\`` in string fields; an unescaped ``,`` ends a measurement or tag, ``=`` a key, a space
the tags or fields."""

from __future__ import annotations

from kamstrup382.outputs.influxdb_line import FieldValue, Point

__all__ = ["parse_body", "parse_line"]


def _token(line: str, at: int, stops: str) -> tuple[str, int]:
    """The unescaped text from ``at`` up to the first unescaped character of ``stops``."""
    out: list[str] = []
    while at < len(line) and line[at] not in stops:
        if line[at] == "\\" and at + 1 < len(line) and line[at + 1] in ",= ":
            out.append(line[at + 1])
            at += 2
        else:
            out.append(line[at])
            at += 1
    return "".join(out), at


def _field(line: str, at: int) -> tuple[FieldValue, int]:
    if line[at] == '"':
        out: list[str] = []
        at += 1
        while line[at] != '"':
            if line[at] == "\\" and line[at + 1] in '"\\':
                at += 1
            out.append(line[at])
            at += 1
        return "".join(out), at + 1
    end = at
    while end < len(line) and line[end] not in ", ":
        end += 1
    text = line[at:end]
    if text in ("true", "false"):
        return text == "true", end
    if text.endswith("i"):
        return int(text[:-1]), end
    return float(text), end


def parse_line(line: str) -> Point:
    """The point of one line (without its line break)."""
    point, end = _parse(line, 0)
    assert end == len(line), line
    return point


def parse_body(body: str) -> list[Point]:
    """The points of a request body: lines each ending in a line break (a line break inside a
    quoted string field is part of the string)."""
    points = []
    at = 0
    while at < len(body):
        point, at = _parse(body, at)
        assert body[at] == "\n", body
        at += 1
        points.append(point)
    return points


def _parse(line: str, at: int) -> tuple[Point, int]:
    measurement, at = _token(line, at, ", ")
    tags: dict[str, str] = {}
    while line[at] == ",":
        key, at = _token(line, at + 1, "=")
        value, at = _token(line, at + 1, ", ")
        tags[key] = value
    assert line[at] == " ", line
    fields: dict[str, FieldValue] = {}
    while True:
        key, at = _token(line, at + 1, "=")
        fields[key], at = _field(line, at + 1)
        if line[at] == " ":
            break
        assert line[at] == ",", line
    end = at + 1
    while end < len(line) and line[end] != "\n":
        end += 1
    return Point(measurement, tags, fields, int(line[at + 1 : end])), end
