"""The dashboard: a Starlette app over a :class:`~kamstrup382.storage.base.Storage`, read only.

Pages: ``/`` (the installation: every meter with its latest values, and the plots of one) and
``/meters/{meter}``. Mode A and KMP meters side by side: each shows the registers it has (a KMP
meter its live power and per-phase voltage, current and power, a mode A meter its tariffs and
peaks), none made up for the other (:mod:`kamstrup382.web.latest`). The JSON API lives under
``/api/`` and is described at ``/api/openapi.json``; every series can also be had as CSV
(``?format=csv``), which is what the plots' download links fetch. Only GET (and HEAD) exist:
anything else is 405. Storage calls are synchronous, so they run in the thread pool, one at a
time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from kamstrup382.documents import any_record_document, dumps
from kamstrup382.errors import StorageError, UsageError
from kamstrup382.storage.base import Storage
from kamstrup382.storage.records import (
    AnyReading,
    KmpReadingRecord,
    MeterStatus,
    ReadingRecord,
)
from kamstrup382.web.buckets import bucket_consumption
from kamstrup382.web.latest import current_registers, shown_columns
from kamstrup382.web.openapi import openapi_document
from kamstrup382.web.params import (
    BadParameter,
    check_query,
    parse_bucket,
    parse_format,
    parse_limit,
    parse_meter,
    parse_time,
    parse_zone,
)
from kamstrup382.web.power import LIVE_EVERY, power_routes
from kamstrup382.web.rows import (
    ATTEMPT_COLUMNS,
    CONSUMPTION_COLUMNS,
    PEAK_COLUMNS,
    PHASE_COLUMNS,
    Row,
    attempt_row,
    consumption_row,
    csv_text,
    peak_row,
    phase_row,
    reading_columns,
    reading_row,
    status_row,
)
from kamstrup382.web.security import HostGuard, SecurityHeaders, TokenGuard

__all__ = ["DEFAULT_TITLE", "create_app"]

DEFAULT_TITLE = "Kamstrup 382 meters"
HERE = Path(__file__).parent
#: plotly.js 4.1.1, its basic bundle (scatter and bar traces, what the plots draw), shipped in
#: the package with its licence (``plotly-basic.LICENSE.txt``): npm ``plotly.js-basic-dist-min``.
PLOTLY_JS = HERE / "static" / "plotly-basic.min.js"

T = TypeVar("T")

#: The reason phrases of the error pages
_REASONS = {400: "Bad request", 401: "Unauthorized", 404: "Not found", 405: "Method not allowed"}

WINDOW_PARAMS = frozenset({"since", "until", "limit", "format"})
CONSUMPTION_PARAMS = frozenset({"since", "until", "bucket", "tz", "format"})
PAGE_PARAMS = frozenset({"bucket"})
INDEX_PARAMS = frozenset({"bucket", "meter"})


class DocumentResponse(JSONResponse):
    """JSON whose register values keep the meter's digits (``Decimal`` written exactly)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


class _Reader:
    """Runs storage reads in the thread pool, one at a time (a connection is not shared)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._lock = threading.Lock()

    async def __call__(self, fn: Callable[[Storage], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self.storage)

        return await run_in_threadpool(locked)


def _meter_summary(
    name: str, latest: AnyReading | None, status: MeterStatus | None
) -> dict[str, Any]:
    """A meter in the list: its protocol and identity (a mode A meter's identification and
    type number, a KMP meter's ``meter_identity`` in its latest reading), its latest reading."""
    mode_a = latest if isinstance(latest, ReadingRecord) else None
    return {
        "name": name,
        "protocol": latest.protocol if latest else None,
        "identification": mode_a.identification if mode_a else None,
        "type_number": mode_a.type_number if mode_a else None,
        "latest": any_record_document(latest) if latest else None,
        "status": status_row(status),
    }


def _meter_detail(storage: Storage, meter: str, status: MeterStatus | None) -> dict[str, Any]:
    """A meter's summary, with each register from the last reading where it was read."""
    latest = storage.latest(meter)
    summary = _meter_summary(meter, latest, status)
    summary["current"] = (
        current_registers(storage, meter, latest, summary["latest"]) if latest else {}
    )
    return summary


def _kmp_only(records: Iterable[AnyReading]) -> Iterator[KmpReadingRecord]:
    return (r for r in records if isinstance(r, KmpReadingRecord))


def _exchanges(summary: dict[str, Any] | None) -> int:
    latest = summary["latest"] if summary else None
    return int(latest["timing"].get("exchanges", 1)) if latest else 1


def _summaries(storage: Storage) -> list[dict[str, Any]]:
    statuses = {s.meter: s for s in storage.status()}
    return [_meter_detail(storage, m, statuses.get(m)) for m in storage.meters()]


def _limited(rows: Iterator[T], limit: int) -> tuple[list[T], bool]:
    out: list[T] = []
    for row in rows:
        if len(out) == limit:
            return out, True
        out.append(row)
    return out, False


def _series_response(
    request: Request,
    meter: str,
    *,
    columns: Sequence[str],
    rows: list[Row],
    extra: dict[str, Any],
    what: str,
) -> Response:
    if parse_format(request.query_params.get("format")) == "csv":
        return Response(
            csv_text(columns, rows),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{meter}-{what}.csv"'},
        )
    return JSONResponse({"meter": meter, **extra, "rows": rows})


def _window(request: Request, zone: Any = None) -> tuple[datetime | None, datetime | None]:
    kwargs = {} if zone is None else {"zone": zone}
    since = parse_time("since", request.query_params.get("since"), **kwargs)
    until = parse_time("until", request.query_params.get("until"), **kwargs)
    return since, until  # until before since: an empty window, not an error


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def create_app(
    storage: Storage,
    *,
    token: str | None = None,
    title: str = DEFAULT_TITLE,
    refresh: float = 30.0,
    allowed_hosts: Sequence[str] | None = None,
    note: str | None = None,
) -> Starlette:
    """The dashboard over ``storage``.

    ``note``: a line every page shows under its title (the demo says its clock is virtual).

    ``token``: every request must then carry it (see :mod:`kamstrup382.web.security`).
    ``refresh``: seconds between the page's automatic updates (0: none).
    ``allowed_hosts``: accepted ``Host`` names besides any loopback address (against DNS
    rebinding when on loopback without a token); ``None`` accepts any. Both guards answer
    before the app does any work.
    """
    if token is not None and not token:
        raise UsageError("an empty token protects nothing: give a token or None")
    read = _Reader(storage)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    secured = bool(token)

    async def known_meter(request: Request, allowed: Collection[str] = ()) -> str:
        check_query(request.query_params.multi_items(), allowed)
        meter = parse_meter(request.path_params["meter"])
        if meter not in await read(lambda s: s.meters()):
            raise HTTPException(404, f"no meter {meter!r} in the storage")
        return meter

    async def page(request: Request, meter: str | None) -> Response:
        summaries = await read(_summaries)
        names = [s["name"] for s in summaries]
        if meter is None:
            wanted = request.query_params.get("meter")
            if wanted:
                meter = parse_meter(wanted)
                if meter not in names:
                    raise HTTPException(404, f"no meter {meter!r} in the storage")
            else:
                meter = names[0] if names else None
        selected = next((s for s in summaries if s["name"] == meter), None)
        bucket = parse_bucket(request.query_params.get("bucket")).value
        powered = {f.meter for f in await read(lambda s: s.live_power())}
        config = {
            "meter": meter,
            "bucket": bucket,
            "refresh": refresh,
            "live": LIVE_EVERY,
            "power": meter in powered,  # a pulse input: the live power section
            "protocol": selected["protocol"] if selected else None,
            # the requests of a readout without a retry: a KMP readout makes one per 8
            # registers (its ``attempts`` count them all), a mode A readout one
            "exchanges": _exchanges(selected),
        }
        return templates.TemplateResponse(
            request,
            "dashboard.html",
            {
                "title": title,
                "note": note,
                "summaries": summaries,
                "selected": selected,
                # the registers some meter's latest reading has (a 685-382's tariffs 3 and 4,
                # which it does not have, only beside a 382C; a KMP meter's phases beside it)
                "registers": shown_columns(s["current"] for s in summaries),
                "config": config,
            },
        )

    async def index(request: Request) -> Response:
        check_query(request.query_params.multi_items(), INDEX_PARAMS)
        return await page(request, None)

    async def meter_page(request: Request) -> Response:
        return await page(request, await known_meter(request, PAGE_PARAMS))

    async def plotly_js(request: Request) -> Response:
        return FileResponse(
            PLOTLY_JS,
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=86400"},
        )

    async def api_page(request: Request) -> Response:
        check_query(request.query_params.multi_items(), ())
        return templates.TemplateResponse(
            request,
            "api.html",
            {"title": title, "doc": openapi_document(title=title, secured=secured)},
        )

    def error_page(request: Request, status: int, detail: str, headers: dict[str, str]) -> Response:
        return templates.TemplateResponse(
            request,
            "error.html",
            {
                "title": title,
                "status": status,
                "reason": _REASONS.get(status, ""),
                "detail": detail,
            },
            status_code=status,
            headers=headers,
        )

    async def api_openapi(request: Request) -> Response:
        check_query(request.query_params.multi_items(), ())
        return JSONResponse(openapi_document(title=title, secured=secured))

    async def api_meters(request: Request) -> Response:
        check_query(request.query_params.multi_items(), ())
        return DocumentResponse({"meters": await read(_summaries)})

    async def api_meter(request: Request) -> Response:
        meter = await known_meter(request)

        def one(s: Storage) -> dict[str, Any]:
            status = next((st for st in s.status() if st.meter == meter), None)
            return _meter_detail(s, meter, status)

        return DocumentResponse(await read(one))

    async def api_latest(request: Request) -> Response:
        meter = await known_meter(request)
        latest = await read(lambda s: s.latest(meter))
        if latest is None:
            raise HTTPException(404, f"meter {meter!r} has no reading yet")
        return DocumentResponse(any_record_document(latest))

    async def api_readings(request: Request) -> Response:
        meter = await known_meter(request, WINDOW_PARAMS)
        since, until = _window(request)
        limit = parse_limit(request.query_params.get("limit"))
        parse_format(request.query_params.get("format"))
        records, truncated = await read(
            lambda s: _limited(iter(s.readings(meter, since, until)), limit)
        )
        extra = {"since": _iso(since), "until": _iso(until), "truncated": truncated}
        if parse_format(request.query_params.get("format")) == "csv":  # flat: one column a field
            latest = await read(lambda s: s.latest(meter))
            protocols = {r.protocol for r in records} | ({latest.protocol} if latest else set())
            rows = [reading_row(r) for r in records]
            columns = reading_columns(protocols)
            return _series_response(
                request, meter, columns=columns, rows=rows, extra=extra, what="readings"
            )
        # JSON: each reading in the one shape of a reading (docs/formats.md)
        documents = [any_record_document(r) for r in records]
        return DocumentResponse({"meter": meter, **extra, "rows": documents})

    async def api_peaks(request: Request) -> Response:
        meter = await known_meter(request, WINDOW_PARAMS)
        since, until = _window(request)
        limit = parse_limit(request.query_params.get("limit"))
        parse_format(request.query_params.get("format"))
        rows, truncated = await read(
            lambda s: _limited(
                (
                    peak_row(r)
                    for r in s.readings(meter, since, until)
                    if isinstance(r, ReadingRecord)  # a KMP meter has no peak registers
                ),
                limit,
            )
        )
        extra = {"since": _iso(since), "until": _iso(until), "truncated": truncated}
        return _series_response(
            request, meter, columns=PEAK_COLUMNS, rows=rows, extra=extra, what="peaks"
        )

    async def api_phases(request: Request) -> Response:
        meter = await known_meter(request, WINDOW_PARAMS)
        since, until = _window(request)
        limit = parse_limit(request.query_params.get("limit"))
        parse_format(request.query_params.get("format"))
        rows, truncated = await read(
            lambda s: _limited(
                # a mode A meter has none of these registers: no rows
                (phase_row(r) for r in _kmp_only(s.readings(meter, since, until))),
                limit,
            )
        )
        extra = {"since": _iso(since), "until": _iso(until), "truncated": truncated}
        return _series_response(
            request, meter, columns=PHASE_COLUMNS, rows=rows, extra=extra, what="phases"
        )

    async def api_attempts(request: Request) -> Response:
        meter = await known_meter(request, WINDOW_PARAMS)
        since, until = _window(request)
        limit = parse_limit(request.query_params.get("limit"))
        parse_format(request.query_params.get("format"))
        rows, truncated = await read(
            lambda s: _limited((attempt_row(a) for a in s.attempts(meter, since, until)), limit)
        )
        extra = {"since": _iso(since), "until": _iso(until), "truncated": truncated}
        return _series_response(
            request, meter, columns=ATTEMPT_COLUMNS, rows=rows, extra=extra, what="attempts"
        )

    async def api_consumption(request: Request) -> Response:
        meter = await known_meter(request, CONSUMPTION_PARAMS)
        zone = parse_zone(request.query_params.get("tz"))
        bucket = parse_bucket(request.query_params.get("bucket"))
        since, until = _window(request, zone)
        parse_format(request.query_params.get("format"))
        rows = await read(
            lambda s: [
                consumption_row(b)
                for b in bucket_consumption(s.consumption(meter, since, until), bucket, zone)
            ]
        )
        extra = {
            "since": _iso(since),
            "until": _iso(until),
            "bucket": bucket.value,
            "tz": str(request.query_params.get("tz") or "UTC"),
        }
        return _series_response(
            request,
            meter,
            columns=CONSUMPTION_COLUMNS,
            rows=rows,
            extra=extra,
            what=f"consumption-{bucket.value}",
        )

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    async def on_bad_parameter(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadParameter)
        body = {"error": "bad_parameter", "detail": str(exc), "parameter": exc.name}
        if is_api(request):
            return JSONResponse(body, status_code=400)
        return error_page(request, 400, str(exc), {})

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kinds = {404: "not_found", 405: "method_not_allowed"}
        headers = dict(exc.headers or {})
        if is_api(request):
            return JSONResponse(
                {"error": kinds.get(exc.status_code, "http_error"), "detail": exc.detail},
                status_code=exc.status_code,
                headers=headers,
            )
        return error_page(request, exc.status_code, exc.detail, headers)

    async def on_storage(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"error": "storage", "detail": f"the storage failed: {exc}"}, status_code=503
        )

    get = ["GET"]
    routes = [
        Route("/", index, methods=get),
        Route("/meters/{meter}", meter_page, methods=get),
        Route("/static/plotly.min.js", plotly_js, methods=get),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        Route("/api", api_page, methods=get),
        Route("/api/", api_page, methods=get),
        Route("/api/openapi.json", api_openapi, methods=get),
        Route("/api/meters", api_meters, methods=get),
        Route("/api/meters/{meter}", api_meter, methods=get),
        Route("/api/meters/{meter}/latest", api_latest, methods=get),
        Route("/api/meters/{meter}/readings", api_readings, methods=get),
        Route("/api/meters/{meter}/consumption", api_consumption, methods=get),
        Route("/api/meters/{meter}/peaks", api_peaks, methods=get),
        Route("/api/meters/{meter}/phases", api_phases, methods=get),
        Route("/api/meters/{meter}/attempts", api_attempts, methods=get),
        *power_routes(read, known_meter, _window, _series_response, WINDOW_PARAMS),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(HostGuard, names=allowed_hosts))
    if token:
        middleware.append(Middleware(TokenGuard, token=token))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            BadParameter: on_bad_parameter,
            HTTPException: on_http,
            StorageError: on_storage,
        },
    )
    app.state.storage = storage
    app.state.title = title
    return app
