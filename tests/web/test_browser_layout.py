"""The dashboard at first sight, in a real Chromium at a desktop's 1400 px and a phone's 390 px:
no sideways scrolling, no toolbar over a title, ticks that fit the bucket, bars under their
month's name, the kWh rounding explained."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.web.test_browser import PLOTS, open_dashboard

pytestmark = pytest.mark.browser


def _boxes(page: Any, selector: str) -> list[dict[str, float]]:
    boxes: list[dict[str, float]] = page.evaluate(
        """sel => [...document.querySelectorAll(sel)].map(e => {
              const r = e.getBoundingClientRect();
              return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
           })""",
        selector,
    )
    return boxes


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["right"] <= b["left"]
        or b["right"] <= a["left"]
        or a["bottom"] <= b["top"]
        or b["bottom"] <= a["top"]
    )


@pytest.mark.parametrize("path", ["/", "/meters/house?bucket=day", "/api", "/no/such/page"])
def test_nothing_scrolls_sideways(sized: Any, live_url: str, path: str) -> None:
    sized.goto(f"{live_url}{path}")
    if path.startswith("/meters"):
        sized.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    width = sized.evaluate("window.innerWidth")
    scroll = sized.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    )
    assert scroll <= width, f"{path}: the page is {scroll} px wide on a {width} px screen"
    if path.startswith("/meters"):
        for plot in PLOTS:
            boxes = _boxes(sized, f"#{plot} .main-svg")
            assert boxes and max(b["right"] for b in boxes) <= width + 0.5, plot


def test_the_meter_table_reflows_on_a_phone(sized: Any, live_url: str) -> None:
    sized.goto(f"{live_url}/")
    header_shown = sized.evaluate(
        "getComputedStyle(document.querySelector('#meters thead')).display !== 'none'"
    )
    phone = sized.evaluate("window.innerWidth") < 700
    assert header_shown is not phone
    if phone:  # each value says what it is
        label = sized.evaluate(
            """getComputedStyle(document.querySelector(
                 '#meters tr[data-meter="house"] [data-field="energy"]'), '::before').content"""
        )
        assert label == '"Energy register (kWh)"'


def test_the_toolbar_never_covers_a_title(sized: Any, live_url: str) -> None:
    open_dashboard(sized, f"{live_url}/meters/house?bucket=day")
    for plot in PLOTS:
        sized.hover(f"#{plot}")  # the toolbar shows on hover
        (title,) = _boxes(sized, f"#{plot} .gtitle")
        toolbars = _boxes(sized, f"#{plot} .modebar")
        assert toolbars, plot
        for toolbar in toolbars:
            assert not _overlap(title, toolbar), (plot, title, toolbar)


def _tick_labels(page: Any, plot: str) -> list[tuple[str, float]]:
    labels: list[tuple[str, float]] = page.evaluate(
        """id => [...document.querySelectorAll(`#${id} .xtick text`)].map(t => {
              const r = t.getBoundingClientRect();
              return [t.textContent, (r.left + r.right) / 2];
           })""",
        plot,
    )
    return labels


def _bar_centres(page: Any, plot: str) -> list[float]:
    return [(b["left"] + b["right"]) / 2 for b in _boxes(page, f"#{plot} .bars path")]


@pytest.mark.parametrize("meter", ["house", "garage"])  # two months of data, and one day
def test_month_bars_stand_under_their_month(sized: Any, live_url: str, meter: str) -> None:
    open_dashboard(sized, f"{live_url}/meters/{meter}?bucket=month")
    for plot in ("plot-energy", "plot-tariffs"):
        labels = _tick_labels(sized, plot)
        assert labels, plot
        assert all(re.fullmatch(r"[A-Z][a-z]{2} \d{4}", text) for text, _ in labels), labels
        bars = _bar_centres(sized, plot)
        assert bars, plot
        assert min(b["right"] - b["left"] for b in _boxes(sized, f"#{plot} .bars path")) > 10
        for centre in bars:
            nearest = min(abs(centre - x) for _, x in labels)
            assert nearest < 2, (plot, centre, labels)


@pytest.mark.parametrize("bucket", ["hour", "day"])
def test_ticks_fit_the_bucket(sized: Any, live_url: str, bucket: str) -> None:
    """Never seconds or milliseconds on a bucket's axis; one day alone is named by its date."""
    open_dashboard(sized, f"{live_url}/meters/garage?bucket={bucket}")  # one day of data
    for plot in ("plot-energy", "plot-tariffs"):
        labels = [text for text, _ in _tick_labels(sized, plot)]
        assert labels, plot
        assert not [text for text in labels if re.search(r"\d:\d\d:\d\d|\.\d", text)], labels
        if bucket == "day":
            assert labels == ["Jan 30"], labels


def test_the_page_explains_the_whole_kwh(page: Any, live_url: str) -> None:
    open_dashboard(page, f"{live_url}/meters/house?bucket=day")
    note = page.locator("#whole-kwh").inner_text()
    assert "rounded" in note
    assert "by 1 kWh" in note
