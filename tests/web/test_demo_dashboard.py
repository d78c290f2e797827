"""End to end: ``k382 demo`` in a subprocess, its dashboard in a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kamstrup382.cli.demo import DEMO_SETTINGS
from kamstrup382.protocol import KAMSTRUP_382, BccMode, decode_reply
from kamstrup382.storage.url import open_storage
from kamstrup382.web.rows import json_number
from tests.web.demo_process import DemoProcess

#: The meters of these tests are 685-382s: their registers.
REGISTERS = KAMSTRUP_382.registers

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLOTS = ("plot-energy", "plot-tariffs", "plot-peaks", "plot-health")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    db = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    with DemoProcess(db=db, factor=5760) as process:
        process.wait_for_readings(16)
        yield process
        assert process.stop() == 0


def test_demo_page_plots_the_collected_data(page: Any, demo: DemoProcess) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{demo.url}/")
    page.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    assert errors == []
    points = page.evaluate(
        """ids => Object.fromEntries(ids.map(id => [id,
               (document.getElementById(id).data || []).map(t => t.x.length)]))""",
        list(PLOTS),
    )
    assert points["plot-energy"][0] >= 1
    assert min(points["plot-tariffs"]) >= 1
    assert min(points["plot-peaks"]) >= 16
    first, retried, failed, attempts = points["plot-health"]
    assert first + retried >= 16  # successful readouts
    assert attempts == first + retried + failed
    # every y value plotted is a number the API gave
    peaks = page.evaluate("document.getElementById('plot-peaks').data[0].y")
    assert all(isinstance(v, int | float) for v in peaks)
    api = httpx.get(f"{demo.url}/api/meters/demo/peaks").json()["rows"]
    assert peaks == [r["actual_peak"] for r in api[: len(peaks)]]
    # and plotly drew them: bars, lines and markers in the SVG
    assert page.locator("#plot-energy .bars path").count() >= 1
    assert page.locator("#plot-tariffs .bars path").count() >= 1
    assert page.locator("#plot-peaks .scatterlayer path.js-line").count() == 2
    assert page.locator("#plot-health .scatterlayer .points path").count() >= 16


def test_demo_table_shows_what_the_emulator_sent(page: Any, demo: DemoProcess) -> None:
    page.goto(f"{demo.url}/")
    row = page.locator('#meters tr[data-meter="demo"]')
    shown_slot = row.locator('[data-field="read_at"]').inner_text()
    cells = {r.name: row.locator(f'[data-field="{r.name}"]').inner_text() for r in REGISTERS}
    type_number = row.locator('[data-field="type_number"]').inner_text()
    assert demo.db is not None
    with open_storage(f"sqlite:///{demo.db}") as storage:
        stored = list(storage.readings("demo"))
    shown = [r for r in stored if r.read_at.isoformat()[:19].replace("T", " ") == shown_slot]
    assert shown, (shown_slot, [r.read_at for r in stored[-3:]])
    # the bytes on the wire, decoded again, are what the table shows
    telegram = decode_reply(shown[-1].raw, bcc=BccMode.AUTO)
    values = telegram.meter_values().as_dict()
    for reg in REGISTERS:
        value = values[reg.name]
        expected = value if isinstance(value, str) else json.dumps(json_number(value))
        assert cells[reg.name] == expected, reg.name
    assert telegram.identification.type_number is not None
    assert type_number == str(telegram.identification.type_number)
    # and they are the demo meter's: its type number, its customer number
    assert type_number == DEMO_SETTINGS.type_number
    assert cells["customer_number"] == DEMO_SETTINGS.customer_number


def test_demo_csv_download_matches_the_api(page: Any, demo: DemoProcess, tmp_path: Path) -> None:
    page.goto(f"{demo.url}/meters/demo?bucket=hour")
    page.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    page.uncheck("#live")  # hold the data still between the download and the API call
    for plot in ("energy", "peaks", "health"):
        href = page.get_attribute(f"#csv-{plot}", "href")
        assert href is not None
        with page.expect_download() as info:
            page.click(f"#csv-{plot}")
        target = tmp_path / f"{plot}.csv"
        info.value.save_as(target)
        table = list(csv.DictReader(io.StringIO(target.read_text())))
        api = httpx.get(demo.url + href.replace("format=csv", "format=json")).json()["rows"]
        # rows may have been added in between; the CSV is a prefix of the later API answer
        if plot == "energy":
            # the last two buckets may still change (an interval over an hour's end is shared)
            table, api = table[:-2], api[: len(table) - 2]
        assert len(table) >= 1
        for csv_row, json_row in zip(table, api, strict=False):
            for key, value in json_row.items():
                if isinstance(value, str):
                    assert csv_row[key] == value
                elif value is None:
                    assert csv_row[key] == ""
                else:
                    assert json.loads(csv_row[key]) == value, (plot, key)
        assert len(api) >= len(table)


def test_demo_page_follows_the_meter_live(page: Any, demo: DemoProcess) -> None:
    page.goto(f"{demo.url}/")
    page.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    assert page.is_checked("#live")
    cell = '#meters tr[data-meter="demo"] [data-field="read_at"]'
    before = page.inner_text(cell)
    loaded = page.get_attribute("#plots", "data-loaded")
    # the demo page refreshes itself every 5 s: a newer reading, and the plots drawn again
    page.wait_for_function(
        """([cell, before, loaded]) =>
             document.querySelector(cell).textContent !== before
             && document.getElementById('plots').dataset.loaded !== loaded""",
        arg=[cell, before, loaded],
        timeout=30_000,
    )
    after = page.inner_text(cell)
    assert after > before  # "YYYY-MM-DD HH:MM:SS" sorts as time
    latest = httpx.get(f"{demo.url}/api/meters/demo").json()["latest"]
    assert latest["read_at"][:19].replace("T", " ") >= after
