"""The OpenAPI 3.1 description of the JSON API, written out by hand from the same tables.

Served at ``/api/openapi.json``; schemathesis checks the app against it in the tests.
"""

from __future__ import annotations

from typing import Any

from kamstrup382 import __version__
from kamstrup382.documents import reading_schema
from kamstrup382.web.params import (
    DATE_PATTERN,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    METER_PATTERN,
    zone_names,
)
from kamstrup382.web.power import LIVE_POWER_COLUMNS, POWER_MINUTE_COLUMNS
from kamstrup382.web.rows import (
    ATTEMPT_COLUMNS,
    CONSUMPTION_COLUMNS,
    PEAK_COLUMNS,
    PHASE_COLUMNS,
)

__all__ = ["WHEN_FORMAT", "openapi_document"]

Schema = dict[str, Any]

_TIME: Schema = {"type": "string", "format": "date-time"}
_NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_NUMBER: Schema = {"type": "number"}


def _reading_schemas() -> dict[str, Schema]:
    """The one shape of a reading (``reading.schema.json``) as OpenAPI components: the schema
    as ``Reading``, each of its ``$defs`` as ``Reading_<name>``."""
    schema = reading_schema()

    def moved(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    v.replace("#/$defs/", "#/components/schemas/Reading_")
                    if k == "$ref"
                    else moved(v)
                )
                for k, v in node.items()
                if k not in ("$schema", "$id", "$defs")
            }
        if isinstance(node, list):
            return [moved(v) for v in node]
        return node

    components: dict[str, Schema] = {"Reading": moved(schema)}
    for name, definition in schema["$defs"].items():
        components[f"Reading_{name}"] = moved(definition)
    return components


def _object(properties: dict[str, Schema], required: tuple[str, ...] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required if required is not None else properties),
        "additionalProperties": False,
    }


def _schemas() -> dict[str, Schema]:
    status_props: dict[str, Schema] = {
        "last_success": _NULLABLE_TIME,
        "last_error": _NULLABLE_TIME,
        "last_error_kind": {"type": ["string", "null"]},
        "last_error_message": {"type": ["string", "null"]},
        "successes": {"type": "integer", "minimum": 0},
        "failures": {"type": "integer", "minimum": 0},
        "success_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
    }
    consumption_props: dict[str, Schema] = {
        "start": _TIME,
        "end": _TIME,
        "energy": {**_NUMBER, "description": "kWh, all tariffs"},
        "tariff_1": {
            "type": ["number", "null"],
            "description": "kWh on tariff 1 (null: a KMP meter has no tariff registers)",
        },
        "tariff_2": {
            "type": ["number", "null"],
            "description": "kWh on tariff 2 (null: a KMP meter has no tariff registers)",
        },
    }
    assert tuple(consumption_props) == CONSUMPTION_COLUMNS
    peak_props: dict[str, Schema] = {
        "read_at": _TIME,
        "actual_peak": {**_NUMBER, "minimum": 0, "description": "kW, this month"},
        "last_month_peak": {
            "type": ["number", "null"],
            "minimum": 0,
            "description": "kW, last month (null: a 382C has none)",
        },
    }
    assert tuple(peak_props) == PEAK_COLUMNS
    gauge: dict[str, Schema] = {
        "W": {"type": ["number", "null"], "description": "W (null: not in this reading)"},
        "V": {"type": ["number", "null"], "description": "V (null: not in this reading)"},
        "A": {"type": ["number", "null"], "description": "A (null: not in this reading)"},
    }
    phase_props: dict[str, Schema] = {
        "read_at": _TIME,
        "power": gauge["W"],
        "power_out": gauge["W"],
        **{
            f"{q}_l{n}": gauge[u]
            for q, u in (("voltage", "V"), ("current", "A"), ("power", "W"))
            for n in (1, 2, 3)
        },
    }
    assert tuple(phase_props) == PHASE_COLUMNS
    attempt_props: dict[str, Schema] = {
        "slot": _TIME,
        "at": _TIME,
        "ok": {"type": "boolean"},
        "duration": _NUMBER,
        "attempts": {"type": "integer", "minimum": 0},
        "kind": {"type": ["string", "null"], "description": "Error kind of a failure"},
    }
    assert tuple(attempt_props) == ATTEMPT_COLUMNS

    watts: Schema = {"type": ["number", "null"], "description": "W"}
    live_props: dict[str, Schema] = {
        "meter": {"type": "string"},
        "at": {**_TIME, "description": "When the collector wrote the figure (UTC)"},
        "age": {**_NUMBER, "minimum": 0, "description": "Seconds since `at`"},
        "watts": {**watts, "description": "Power from the pulses, W (null before two pulses)"},
        "energy_kwh": {
            "type": ["number", "null"],
            "description": "The last energy register plus the pulses since, kWh",
        },
        "pulses": {"type": "integer", "minimum": 0},
        "connected": {"type": "boolean", "description": "The pulse source delivered"},
    }
    assert tuple(live_props) == LIVE_POWER_COLUMNS
    minute_props: dict[str, Schema] = {
        "minute": {**_TIME, "description": "Start of the minute (UTC)"},
        "pulses": {"type": "integer", "minimum": 0},
        "mean_w": {**_NUMBER, "minimum": 0, "description": "From the pulse count, W"},
        "min_w": {**watts, "description": "Least interval estimate in the minute, W"},
        "max_w": {**watts, "description": "Most interval estimate in the minute, W"},
    }
    assert tuple(minute_props) == POWER_MINUTE_COLUMNS

    def series(item: str, extra: dict[str, Schema]) -> Schema:
        props: dict[str, Schema] = {
            "meter": {"type": "string"},
            **extra,
            "rows": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
        }
        return _object(props)

    meter_props: dict[str, Schema] = {
        "name": {"type": "string"},
        "protocol": {
            "type": ["string", "null"],
            "enum": ["iec", "kmp", None],
            "description": "Of its latest reading: `iec` (mode A) or `kmp`; null before one",
        },
        "identification": {"type": ["string", "null"], "description": "Mode A only"},
        "type_number": {"type": ["string", "null"], "description": "Mode A only"},
        "latest": {"oneOf": [{"$ref": "#/components/schemas/Reading"}, {"type": "null"}]},
        "status": {"$ref": "#/components/schemas/Status"},
    }
    window: dict[str, Schema] = {"since": _NULLABLE_TIME, "until": _NULLABLE_TIME}
    limited: dict[str, Schema] = {**window, "truncated": {"type": "boolean"}}
    return {
        **_reading_schemas(),
        "Status": _object(status_props),
        "Meter": _object(
            {
                **meter_props,
                "current": {
                    "type": "object",
                    "additionalProperties": {"$ref": "#/components/schemas/CurrentRegister"},
                    "description": "Each register by name, from the last reading where it was "
                    "read (a KMP meter may leave one out of an answer: its value then comes "
                    "from an earlier reading of the last day, with that reading's time)",
                },
            }
        ),
        "CurrentRegister": _object(
            {
                "value": {"type": ["number", "string"]},
                "unit": {"type": ["string", "null"]},
                "read_at": {**_TIME, "description": "The reading it comes from"},
            }
        ),
        "MeterList": _object(
            {"meters": {"type": "array", "items": {"$ref": "#/components/schemas/Meter"}}}
        ),
        "ConsumptionBucket": _object(consumption_props),
        "Peak": _object(peak_props),
        "Attempt": _object(attempt_props),
        "Readings": series("Reading", limited),
        "Consumption": series(
            "ConsumptionBucket",
            {
                **window,
                "bucket": {"type": "string", "enum": ["hour", "day", "month"]},
                "tz": {"type": "string"},
            },
        ),
        "Peaks": series("Peak", limited),
        "Phase": _object(phase_props),
        "Phases": series("Phase", limited),
        "Attempts": series("Attempt", limited),
        "LivePower": _object(live_props),
        "PowerMinute": _object(minute_props),
        "PowerMinutes": series("PowerMinute", limited),
        "Error": _object(
            {
                "error": {"type": "string", "description": "Machine-readable kind"},
                "detail": {"type": "string", "description": "What is wrong, and where"},
                "parameter": {"type": "string", "description": "The parameter at fault"},
            },
            required=("error", "detail"),
        ),
    }


def _param(
    name: str, where: str, schema: Schema, description: str, required: bool = False
) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


_METER_PARAM = _param(
    "meter", "path", {"type": "string", "pattern": METER_PATTERN}, "Meter name", required=True
)
#: The format of a ``since``/``until`` value: an ISO 8601 date, or date-time whose offset and
#: seconds may be left out (RFC 3339's ``date`` and ``date-time`` and local times), of a day
#: the calendar has. The pattern says the shape; the format names the whole rule.
WHEN_FORMAT = "iso8601-date-or-time"
#: What :func:`~kamstrup382.web.params.parse_time` takes, exactly.
_WHEN: Schema = {"type": "string", "format": WHEN_FORMAT, "pattern": DATE_PATTERN}
_SINCE = _param(
    "since",
    "query",
    _WHEN,
    "From this time on (inclusive): ISO 8601 date or date-time; no offset means UTC "
    "(or `tz` where the operation has it)",
)
_UNTIL = _param(
    "until",
    "query",
    _WHEN,
    "Before this time (exclusive); before `since` gives nothing",
)
_LIMIT = _param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "At most this many rows (the oldest first); `truncated` says when more exist",
)
_FORMAT = _param(
    "format",
    "query",
    {"type": "string", "enum": ["json", "csv"], "default": "json"},
    "`csv` gives the rows as CSV (a header line, then one line per row; the cells are the "
    "JSON values)",
)
_BUCKET = _param(
    "bucket",
    "query",
    {"type": "string", "enum": ["hour", "day", "month"], "default": "day"},
    "Bucket size",
)
_TZ = _param(
    "tz",
    "query",
    {"type": "string", "enum": zone_names(), "default": "UTC"},
    "IANA time zone whose wall clock the buckets follow",
)


def _error(description: str) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(schema: str, description: str, csv: bool = False) -> Schema:
    content: Schema = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {"description": description, "content": content}


def openapi_document(*, title: str, secured: bool) -> Schema:
    """The description of the API as served by an app (``secured``: it asks for a token)."""
    common = {
        "400": _error("A parameter is not acceptable"),
        "404": _error("No such meter, or no reading yet"),
    }
    if secured:
        common["401"] = _error("Missing or wrong token")

    def op(
        summary: str, op_id: str, params: list[Schema], ok: Schema, *, meter: bool = True
    ) -> Schema:
        responses: Schema = {"200": ok, **common}
        if not meter:
            responses.pop("404")
            if not params:
                responses.pop("400")
        return {
            "get": {
                "summary": summary,
                "operationId": op_id,
                "parameters": ([_METER_PARAM] if meter else []) + params,
                "responses": responses,
            }
        }

    window = [_SINCE, _UNTIL]
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": f"{title} API",
            "version": __version__,
            "description": "Read-only access to stored Kamstrup 382 readings. Every operation "
            "is a GET; times are ISO 8601, register values JSON numbers in the meter's units.",
        },
        "paths": {
            "/api/meters": op(
                "All meters with their latest reading and read health",
                "listMeters",
                [],
                _ok("MeterList", "The meters"),
                meter=False,
            ),
            "/api/meters/{meter}": op(
                "One meter with its latest reading and read health",
                "getMeter",
                [],
                _ok("Meter", "The meter"),
            ),
            "/api/meters/{meter}/latest": op(
                "The meter's latest reading", "getLatest", [], _ok("Reading", "The reading")
            ),
            "/api/meters/{meter}/readings": op(
                "Readings in time order (CSV: a mode A meter's columns, or a KMP meter's; "
                "both with `protocol` for a meter read in both)",
                "listReadings",
                [*window, _LIMIT, _FORMAT],
                _ok("Readings", "The readings", csv=True),
            ),
            "/api/meters/{meter}/consumption": op(
                "Energy consumed per hour, day or month (kWh), total and per tariff",
                "getConsumption",
                [*window, _BUCKET, _TZ, _FORMAT],
                _ok("Consumption", "The buckets that have consumption", csv=True),
            ),
            "/api/meters/{meter}/peaks": op(
                "This month's and last month's peak power at each reading (mode A readings: "
                "a KMP meter has no peak registers)",
                "listPeaks",
                [*window, _LIMIT, _FORMAT],
                _ok("Peaks", "The peaks", csv=True),
            ),
            "/api/meters/{meter}/phases": op(
                "Power, and voltage, current and power per phase at each reading (KMP "
                "readings: a mode A meter has none of these registers)",
                "listPhases",
                [*window, _LIMIT, _FORMAT],
                _ok("Phases", "The readings' gauges", csv=True),
            ),
            "/api/meters/{meter}/attempts": op(
                "Every readout attempt, success or failure, with its duration",
                "listAttempts",
                [*window, _LIMIT, _FORMAT],
                _ok("Attempts", "The attempts", csv=True),
            ),
            "/api/meters/{meter}/power": op(
                "The live power from the meter's pulses, as the collector wrote it last",
                "getPower",
                [],
                _ok("LivePower", "The live figure"),
            ),
            "/api/meters/{meter}/power/minutes": op(
                "Power per minute from the pulses (default: the last 24 hours)",
                "listPowerMinutes",
                [*window, _LIMIT, _FORMAT],
                _ok("PowerMinutes", "The minutes", csv=True),
            ),
        },
        "components": {"schemas": _schemas()},
    }
    if secured:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "The --token value"}
        }
        doc["security"] = [{"bearer": []}]
    return doc
