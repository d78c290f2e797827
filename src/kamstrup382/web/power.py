"""The dashboard's live power (pin 3's pulses): two API operations and their rows.

- ``GET /api/meters/{meter}/power``: the meter's live figure as the collector last stored it
  (once a second): ``watts`` (``null`` before two pulses), ``energy_kwh``, ``pulses``,
  ``connected``, ``at``, and ``age``: seconds since ``at`` by this server's clock (a figure
  that stops moving says the collector stopped). 404 for a meter without a pulse input.
- ``GET /api/meters/{meter}/power/minutes``: per-minute power in ``[since, until)`` (default:
  the last 24 hours): ``pulses``, ``mean_w`` (from the pulse count), ``min_w``/``max_w`` (of
  the interval estimates), JSON or CSV.

The page polls the first every :data:`LIVE_EVERY` seconds and draws the second (``power.js``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kamstrup382.storage.base import Storage
from kamstrup382.storage.power_records import LivePower, PowerMinute
from kamstrup382.web.params import parse_format, parse_limit
from kamstrup382.web.rows import Row

__all__ = [
    "LIVE_EVERY",
    "LIVE_POWER_COLUMNS",
    "POWER_MINUTE_COLUMNS",
    "live_power_row",
    "power_minute_row",
    "power_routes",
]

#: Seconds between two polls of the live figure by the page.
LIVE_EVERY = 2
#: The minutes shown when the request names no window.
DEFAULT_SPAN = timedelta(hours=24)

LIVE_POWER_COLUMNS = ("meter", "at", "age", "watts", "energy_kwh", "pulses", "connected")
POWER_MINUTE_COLUMNS = ("minute", "pulses", "mean_w", "min_w", "max_w")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def live_power_row(live: LivePower, now: datetime) -> Row:
    return {
        "meter": live.meter,
        "at": _iso(live.at),
        "age": max(0.0, round((now - live.at).total_seconds(), 3)),
        "watts": None if live.watts is None else round(live.watts, 1),
        "energy_kwh": None if live.energy_kwh is None else float(live.energy_kwh),
        "pulses": live.pulses,
        "connected": live.connected,
    }


def power_minute_row(minute: PowerMinute) -> Row:
    def watts(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "minute": _iso(minute.minute),
        "pulses": minute.pulses,
        "mean_w": round(minute.mean_w, 1),
        "min_w": watts(minute.min_w),
        "max_w": watts(minute.max_w),
    }


Read = Callable[[Callable[[Storage], Any]], Awaitable[Any]]
KnownMeter = Callable[[Request, frozenset[str]], Awaitable[str]]
Window = Callable[[Request], tuple[datetime | None, datetime | None]]
Series = Callable[..., Response]


def power_routes(
    read: Read, known_meter: KnownMeter, window: Window, series: Series, params: frozenset[str]
) -> Sequence[Route]:
    """The two routes over the app's storage reader and its request helpers."""

    async def api_power(request: Request) -> Response:
        meter = await known_meter(request, frozenset())
        figures: list[LivePower] = await read(lambda s: s.live_power())
        live = next((f for f in figures if f.meter == meter), None)
        if live is None:
            raise HTTPException(404, f"meter {meter!r} has no pulse input (no live power)")
        return JSONResponse(live_power_row(live, datetime.now(UTC)))

    async def api_power_minutes(request: Request) -> Response:
        meter = await known_meter(request, params)
        since, until = window(request)
        limit = parse_limit(request.query_params.get("limit"))
        parse_format(request.query_params.get("format"))
        if since is None and until is None:
            since = datetime.now(UTC) - DEFAULT_SPAN
        minutes: list[PowerMinute] = await read(lambda s: s.power_minutes(meter, since, until))
        rows = [power_minute_row(m) for m in minutes[:limit]]
        extra = {
            "since": None if since is None else _iso(since),
            "until": None if until is None else _iso(until),
            "truncated": len(minutes) > limit,
        }
        return series(
            request, meter, columns=POWER_MINUTE_COLUMNS, rows=rows, extra=extra, what="power"
        )

    get = ["GET"]
    return [
        Route("/api/meters/{meter}/power", api_power, methods=get),
        Route("/api/meters/{meter}/power/minutes", api_power_minutes, methods=get),
    ]
