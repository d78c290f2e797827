"""The dashboard in a real headless Chromium: plots drawn with the stored data, CSV = API."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from kamstrup382.protocol import KAMSTRUP_382
from kamstrup382.storage.base import Storage
from kamstrup382.web import create_app
from kamstrup382.web.rows import json_number
from tests.web.conftest import LiveServer
from tests.web.history import History

#: The meters of these tests are 685-382s: their registers.
REGISTERS = KAMSTRUP_382.registers

pytestmark = pytest.mark.browser

PLOTS = ("plot-energy", "plot-tariffs", "plot-peaks", "plot-health")


def plot_points(page: Any) -> dict[str, list[int]]:
    """Per plot div: the number of points of each trace plotly drew."""
    points: dict[str, list[int]] = page.evaluate(
        """ids => Object.fromEntries(ids.map(id => [id,
               (document.getElementById(id).data || []).map(t => t.x.length)]))""",
        list(PLOTS),
    )
    return points


def open_dashboard(page: Any, url: str) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    return errors


def test_plots_render_the_stored_data(page: Any, live_url: str, history: History) -> None:
    errors = open_dashboard(page, f"{live_url}/meters/house?bucket=hour")
    assert errors == []
    points = plot_points(page)
    api = httpx.get(
        f"{live_url}/api/meters/house/consumption",
        params={
            "bucket": "hour",
            "tz": page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone"),
        },
    ).json()
    assert points["plot-energy"] == [len(api["rows"])]
    assert points["plot-tariffs"] == [len(api["rows"])] * 2
    assert points["plot-peaks"] == [len(history.readings)] * 2
    first, retried, failed, rate = points["plot-health"]
    assert (first, retried, failed, rate) == (
        sum(r.attempts == 1 for r in history.readings),
        sum(r.attempts > 1 for r in history.readings),
        len(history.failures),
        len(history.readings) + len(history.failures),
    )
    assert retried > 0
    # the y values are the API's
    energy = page.evaluate("document.getElementById('plot-energy').data[0].y")
    assert energy == [r["energy"] for r in api["rows"]]
    # plotly drew SVG bars, not only kept the data
    assert page.locator("#plot-energy .bars path").count() >= len(api["rows"]) // 2


def test_meter_table_shows_the_latest_telegram(page: Any, live_url: str, history: History) -> None:
    open_dashboard(page, f"{live_url}/")
    latest = history.readings[-1]
    row = page.locator('#meters tr[data-meter="house"]')
    assert row.locator('[data-field="type_number"]').inner_text() == latest.type_number
    values = latest.values.as_dict()
    for reg in REGISTERS:
        value = values[reg.name]
        expected = value if isinstance(value, str) else json.dumps(json_number(value))
        shown = row.locator(f'[data-field="{reg.name}"]').inner_text()
        assert shown == expected, reg.name
    assert page.locator('#meters tr[data-meter="garage"]').count() == 1


@pytest.mark.parametrize("plot", ["energy", "tariffs", "peaks", "health"])
def test_csv_download_matches_the_api(page: Any, live_url: str, tmp_path: Path, plot: str) -> None:
    open_dashboard(page, f"{live_url}/meters/house?bucket=day")
    href = page.get_attribute(f"#csv-{plot}", "href")
    assert href is not None and "format=csv" in href
    with page.expect_download() as info:
        page.click(f"#csv-{plot}")
    target = tmp_path / "download.csv"
    info.value.save_as(target)
    table = list(csv.DictReader(io.StringIO(target.read_text())))
    api = httpx.get(live_url + href.replace("format=csv", "format=json")).json()["rows"]
    assert len(table) == len(api) > 0
    for csv_row, json_row in zip(table, api, strict=True):
        assert list(csv_row) == list(json_row)
        for key, value in json_row.items():
            if isinstance(value, str):
                assert csv_row[key] == value
            elif value is None:
                assert csv_row[key] == ""
            else:
                assert json.loads(csv_row[key]) == value


def test_bucket_choice_redraws(page: Any, live_url: str) -> None:
    open_dashboard(page, f"{live_url}/meters/house?bucket=hour")
    hours = plot_points(page)["plot-energy"][0]
    loaded = page.get_attribute("#plots", "data-loaded")
    page.select_option("#bucket", "day")
    page.wait_for_function(
        "before => document.getElementById('plots').dataset.loaded !== before",
        arg=loaded,
        timeout=10_000,
    )
    days = plot_points(page)["plot-energy"][0]
    assert 0 < days < hours
    assert "format=csv" in (page.get_attribute("#csv-energy", "href") or "")
    assert "bucket=day" in (page.get_attribute("#csv-energy", "href") or "")


def test_token_once_in_the_address_then_the_cookie(page: Any, storage: Storage) -> None:
    with LiveServer(create_app(storage, token="browser-token", refresh=0)) as live:
        response = page.goto(f"{live.url}/meters/house")
        assert response is not None and response.status == 401
        open_dashboard(page, f"{live.url}/meters/house?token=browser-token&bucket=day")
        assert page.url == f"{live.url}/meters/house?bucket=day"  # the token left the address
        assert min(plot_points(page)["plot-energy"]) > 0  # the page's API calls were let in
        cookies = page.context.cookies()
        assert [(c["name"], c["httpOnly"]) for c in cookies] == [("k382_token", True)]
        assert cookies[0]["value"] != "browser-token"
