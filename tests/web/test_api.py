"""The JSON API and its CSV twin over a real SQLite storage filled from protocol telegrams."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import jsonschema
import pytest

from kamstrup382.documents import reading_schema
from kamstrup382.protocol import KAMSTRUP_382, BccMode, decode_reply
from kamstrup382.storage.base import Storage
from kamstrup382.web.app import PLOTLY_JS
from kamstrup382.web.rows import READING_COLUMNS
from tests.web.history import History

#: The meters of these tests are 685-382s: their registers.
REGISTERS = KAMSTRUP_382.registers

SERIES = ("readings", "consumption", "peaks", "phases", "attempts")


def as_decimal(value: object) -> Decimal:
    return Decimal(json.dumps(value))


async def test_meters_lists_every_meter_with_its_latest_values(
    client: httpx.AsyncClient, history: History, second_history: History
) -> None:
    response = await client.get("/api/meters")
    assert response.status_code == 200
    meters = {m["name"]: m for m in response.json()["meters"]}
    assert set(meters) == {"house", "garage"}
    house = meters["house"]
    assert house["type_number"] == "685-382-OK-15"
    assert house["identification"] == "KAM 685-382-OK-15"
    # the latest values are those of the last telegram the meter sent
    sent = decode_reply(history.sent[-1], bcc=BccMode.SUM7).meter_values()
    latest = house["latest"]
    jsonschema.validate(latest, reading_schema())  # the one shape of a reading
    for reg in REGISTERS:
        expected = getattr(sent, reg.name)
        got = latest["registers"][reg.name]["value"]
        assert (got if isinstance(expected, str) else as_decimal(got)) == expected, reg.name
    assert house["status"]["successes"] == len(history.readings)
    assert house["status"]["failures"] == len(history.failures)
    assert meters["garage"]["status"]["failures"] == 0


async def test_latest_and_meter(client: httpx.AsyncClient, history: History) -> None:
    latest = (await client.get("/api/meters/house/latest")).json()
    jsonschema.validate(latest, reading_schema())
    assert latest["slot"] == history.readings[-1].slot.isoformat()
    assert latest["registers"]["energy"]["value"] == int(history.readings[-1].values.energy)
    meter = (await client.get("/api/meters/house")).json()
    assert meter["latest"] == latest
    assert meter["name"] == "house"


async def test_readings_in_order_with_window_and_limit(
    client: httpx.AsyncClient, history: History
) -> None:
    body = (await client.get("/api/meters/house/readings")).json()
    assert body["truncated"] is False
    assert [r["slot"] for r in body["rows"]] == [r.slot.isoformat() for r in history.readings]
    for row in body["rows"]:
        jsonschema.validate(row, reading_schema())  # the one shape of a reading
    assert [r["registers"]["pulse_input"]["value"] for r in body["rows"]] == [
        int(r.values.pulse_input) for r in history.readings
    ]
    body = (await client.get("/api/meters/house/readings", params={"limit": 5})).json()
    assert body["truncated"] is True
    assert len(body["rows"]) == 5
    since, until = history.readings[10].read_at, history.readings[20].read_at
    body = (
        await client.get(
            "/api/meters/house/readings",
            params={"since": since.isoformat(), "until": until.isoformat()},
        )
    ).json()
    assert [r["read_at"] for r in body["rows"]] == [
        r.read_at.isoformat() for r in history.readings[10:20]
    ]


async def test_consumption_adds_up_to_the_register_difference(
    client: httpx.AsyncClient, history: History
) -> None:
    first, last = history.readings[0].values, history.readings[-1].values
    for bucket in ("hour", "day", "month"):
        for tz in ("UTC", "Europe/Copenhagen"):
            body = (
                await client.get(
                    "/api/meters/house/consumption", params={"bucket": bucket, "tz": tz}
                )
            ).json()
            rows = body["rows"]
            assert body["bucket"] == bucket
            assert sum(as_decimal(r["energy"]) for r in rows) == last.energy - first.energy
            assert sum(as_decimal(r["tariff_1"]) for r in rows) == last.tariff_1 - first.tariff_1
            assert sum(as_decimal(r["tariff_2"]) for r in rows) == last.tariff_2 - first.tariff_2
            starts = [r["start"] for r in rows]
            assert starts == sorted(starts)
    days = (await client.get("/api/meters/house/consumption", params={"bucket": "day"})).json()
    assert [r["start"][:10] for r in days["rows"]] == [
        "2026-01-30",
        "2026-01-31",
        "2026-02-01",
        "2026-02-02",
        "2026-02-03",
    ]
    # the test load uses tariff 2 only at night (22:00-06:00 UTC)
    hours = (await client.get("/api/meters/house/consumption", params={"bucket": "hour"})).json()
    for r in hours["rows"]:
        hour = int(r["start"][11:13])
        if 7 <= hour < 21:
            assert r["tariff_2"] == 0, r


async def test_peaks_follow_the_month(client: httpx.AsyncClient, history: History) -> None:
    rows = (await client.get("/api/meters/house/peaks")).json()["rows"]
    assert len(rows) == len(history.readings)
    february = [r for r in rows if r["read_at"] >= "2026-02-01T00:15"]
    january = [r for r in rows if r["read_at"] < "2026-02-01"]
    # at the month change this month's peak becomes last month's
    assert february[0]["last_month_peak"] == max(r["actual_peak"] for r in january)
    assert {type(r["actual_peak"]) for r in rows} <= {int, float}


async def test_attempts_hold_successes_and_failures(
    client: httpx.AsyncClient, history: History
) -> None:
    rows = (await client.get("/api/meters/house/attempts")).json()["rows"]
    assert len(rows) == len(history.readings) + len(history.failures)
    failed = [r for r in rows if not r["ok"]]
    assert len(failed) == len(history.failures)
    assert {r["kind"] for r in failed} == {"timeout"}
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)


def flat(document: dict[str, Any]) -> dict[str, Any]:
    """The CSV columns of a reading, taken from its JSON document."""
    ident = document["identification"]
    fields = {
        "meter": document["meter"],
        "slot": document["slot"],
        "read_at": document["read_at"],
        "identification": ident["line"],
        "type_number": ident["type_number"] and ident["type_number"]["text"],
        "bcc_algorithm": document["bcc"]["algorithm"],
        "answer_delay": document["timing"]["answer_delay_s"],
        "duration": document["timing"]["duration_s"],
        "attempts": document["timing"]["attempts"],
    }
    registers = document["registers"]
    # every register column; one the meter does not have is empty in CSV, absent in JSON
    return {
        column: fields[column] if column in fields else registers.get(column, {}).get("value")
        for column in READING_COLUMNS
    }


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("readings", {}),
        ("readings", {"since": "2026-01-31", "until": "2026-02-01T06:00:00Z", "limit": "50"}),
        ("consumption", {"bucket": "hour"}),
        ("consumption", {"bucket": "day", "tz": "Europe/Copenhagen"}),
        ("consumption", {"bucket": "month"}),
        ("peaks", {}),
        ("attempts", {"since": "2026-02-01"}),
    ],
)
async def test_csv_is_the_same_data_as_json(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    url = f"/api/meters/house/{path}"
    data = (await client.get(url, params=params)).json()["rows"]
    response = await client.get(url, params={**params, "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert len(table) == len(data) > 0
    if path == "readings":  # a reading's one JSON shape, flat in CSV: one column a field
        data = [flat(document) for document in data]
    for json_row, csv_row in zip(data, table, strict=True):
        assert list(csv_row) == list(json_row)
        for key, value in json_row.items():
            if value is None:
                assert csv_row[key] == ""
            elif isinstance(value, str):
                assert csv_row[key] == value
            else:
                assert json.loads(csv_row[key]) == value, key


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/meters/bad%20name/readings", "meter"),
        ("/api/meters/house/readings?since=yesterday", "since"),
        ("/api/meters/house/readings?since=2026-02-30", "since"),
        ("/api/meters/house/readings?until=2026-01-01T25:00", "until"),
        ("/api/meters/house/readings?limit=0", "limit"),
        ("/api/meters/house/readings?limit=-3", "limit"),
        ("/api/meters/house/readings?limit=ten", "limit"),
        ("/api/meters/house/readings?format=xml", "format"),
        ("/api/meters/house/consumption?bucket=week", "bucket"),
        ("/api/meters/house/consumption?tz=Mars/Olympus", "tz"),
        ("/api/meters/house/consumption?tz=../../etc/passwd", "tz"),
        ("/api/meters/house/readings?bucket=day", "bucket"),
        ("/api/meters/house/consumption?limit=3", "limit"),
        ("/api/meters?verbose=1", "verbose"),
        ("/api/meters/house/readings?since=2026-01-01&since=2026-01-02", "since"),
    ],
)
async def test_bad_input_is_a_400_naming_the_parameter(
    client: httpx.AsyncClient, url: str, parameter: str
) -> None:
    response = await client.get(url)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_parameter"
    assert body["parameter"] == parameter
    assert parameter in body["detail"]


async def test_until_before_since_is_an_empty_window(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/meters/house/readings", params={"since": "2026-02-02", "until": "2026-02-01"}
    )
    assert response.status_code == 200
    assert response.json()["rows"] == []


async def test_times_are_read_as_iso_8601(client: httpx.AsyncClient, history: History) -> None:
    at = history.readings[5].read_at
    forms = [
        at.isoformat(),
        at.isoformat().replace("+00:00", "Z"),
        at.astimezone(timezone(timedelta(hours=-5, minutes=-30))).isoformat(),
        at.replace(tzinfo=None).isoformat(),  # no offset: UTC
        at.isoformat().replace("+00:00", "123Z").replace("T", "t"),  # nanoseconds, lower case
    ]
    for form in forms:
        rows = (
            await client.get("/api/meters/house/readings", params={"since": form, "limit": 1})
        ).json()["rows"]
        assert rows[0]["read_at"] == at.isoformat(), form
    # a window beyond what can be held is clamped, not an error
    far = await client.get(
        "/api/meters/house/readings", params={"until": "9999-12-31T23:59:59-23:00"}
    )
    assert len(far.json()["rows"]) == len(history.readings)


async def test_unknown_meter_is_a_404(client: httpx.AsyncClient) -> None:
    for path in ("", "/latest", "/readings", "/consumption", "/peaks", "/attempts"):
        response = await client.get(f"/api/meters/nobody{path}")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    page = await client.get("/meters/nobody")
    assert page.status_code == 404


async def test_openapi_describes_every_api_route(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/meters",
        "/api/meters/{meter}",
        "/api/meters/{meter}/latest",
        *(f"/api/meters/{{meter}}/{s}" for s in SERIES),
        "/api/meters/{meter}/power",
        "/api/meters/{meter}/power/minutes",
    }
    assert all(set(ops) == {"get"} for ops in doc["paths"].values())
    assert "security" not in doc


async def test_pages_and_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "685-382-OK-15" in page.text
    assert 'data-meter="garage"' in page.text
    assert (await client.get("/meters/garage")).status_code == 200
    plotly_js = await client.get("/static/plotly.min.js")
    assert plotly_js.status_code == 200
    assert b"plotly.js" in plotly_js.content[:2000]
    assert (await client.get("/static/dashboard.js")).status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # plotly.js is the copy shipped in the package, beside its licence; the page loads
    # nothing from elsewhere
    assert plotly_js.content == PLOTLY_JS.read_bytes()
    assert b"plotly.js (basic - minified) v4.1.1" in plotly_js.content[:200]
    licence = PLOTLY_JS.with_name("plotly-basic.LICENSE.txt").read_text()
    assert licence.startswith("MIT License")
    assert re.findall(r'(?:src|href)="(?!/|#|data:)', page.text) == []


@pytest.mark.parametrize(
    ("url", "status", "named"),
    [
        ("/?bucket=week", 400, "bucket"),
        ("/?verbose=1", 400, "verbose"),
        ("/?meter=nobody", 404, "nobody"),
        ("/?meter=..%2Fetc", 400, "meter"),
        ("/meters/house?meter=garage", 400, "meter"),
        ("/meters/house?bucket=day&bucket=hour", 400, "bucket"),
        ("/meters/nobody", 404, "nobody"),
    ],
)
async def test_pages_validate_their_input(
    client: httpx.AsyncClient, url: str, status: int, named: str
) -> None:
    response = await client.get(url)
    assert response.status_code == status
    # a page for people: HTML, saying what is wrong, with the way back
    assert response.headers["content-type"].startswith("text/html")
    assert named in response.text
    assert '<section id="error">' in response.text
    assert '<a href="/">' in response.text


async def test_unknown_pages_are_html_and_unknown_api_paths_json(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "404 Not found" in page.text
    api = await client.get("/api/no/such/thing")
    assert api.status_code == 404
    assert api.json()["error"] == "not_found"


@pytest.mark.parametrize("path", ["/api", "/api/"])
async def test_the_api_page_renders_the_openapi_document(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    document = (await client.get("/api/openapi.json")).json()
    for route, item in document["paths"].items():
        for operation in item.values():
            assert f'id="{operation["operationId"]}"' in page.text
            assert f"</span> {route}</h3>" in page.text
            for parameter in operation.get("parameters", []):
                assert f"<code>{parameter['name']}</code>" in page.text
    assert '<a href="/api/openapi.json">' in page.text


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_nothing_writes(client: httpx.AsyncClient, storage: Storage, method: str) -> None:
    before = (list(storage.readings()), list(storage.attempts()), storage.status())
    for url in (
        "/",
        "/meters/house",
        "/static/dashboard.js",
        "/api/openapi.json",
        "/api/meters",
        "/api/meters/house",
        "/api/meters/house/latest",
        *(f"/api/meters/house/{s}" for s in SERIES),
    ):
        response = await client.request(method, url, content=b"{}")
        assert response.status_code == 405, url
        assert "GET" in response.headers["allow"], url
    assert (list(storage.readings()), list(storage.attempts()), storage.status()) == before
