"""A mode A meter (685-382) and a KMP meter (382Jx3) on one dashboard, in a real Chromium at a
desktop's and a phone's width: each shows the registers it has and none of the other's, the KMP
meter's page its power and phases (a value the last answer left out from the reading before,
marked), nothing scrolls sideways, no script error. (The storage keeps KMP readings from
schema version 10 on.)"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from kamstrup382.web.rows import json_number
from tests.web.history import History
from tests.web.kmp_history import LEFT_OUT, KmpHistory

pytestmark = pytest.mark.browser

MODE_A_ONLY = ("tariff_1", "tariff_2", "hour_counter", "actual_peak")
PHASES = tuple(f"{q}_l{n}" for n in (1, 2, 3) for q in ("voltage", "current", "power"))


def _watch(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


def _shown(value: object) -> str:
    return json.dumps(json_number(value)) if not isinstance(value, str) else value  # type: ignore[arg-type]


def _wall(at: datetime) -> str:
    return at.isoformat()[:19].replace("T", " ")


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("window.innerWidth")
    scroll = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    )
    assert scroll <= width, f"the page is {scroll} px wide on a {width} px screen"


def _visible(page: Any, selector: str) -> bool:
    shown: bool = page.evaluate(
        "sel => getComputedStyle(document.querySelector(sel)).display !== 'none'", selector
    )
    return shown


def test_both_meters_in_the_table(
    sized: Any,
    both_url: str,
    mode_a: History,
    kmp: KmpHistory,
) -> None:
    errors = _watch(sized)
    sized.goto(f"{both_url}/")
    phone = sized.evaluate("window.innerWidth") < 700
    house = sized.locator('#meters tr[data-meter="house"]')
    flat = sized.locator('#meters tr[data-meter="flat"]')
    values = mode_a.readings[-1].values.as_dict()
    for name in MODE_A_ONLY:
        assert house.locator(f'[data-field="{name}"]').text_content() == _shown(values[name])
        assert flat.locator(f'[data-field="{name}"]').text_content() == ""  # none made up
    last, before = kmp.readings[-1], kmp.readings[-2]
    assert flat.locator('[data-field="type_number"]').text_content() == "KMP 0x0382"
    assert flat.locator('[data-field="energy"]').text_content() == _shown(last.values["energy"])
    for name in ("power", *PHASES):
        cell = flat.locator(f'[data-field="{name}"]')
        if name in LEFT_OUT:  # not in the last answer: the reading before's, greyed, its time
            assert cell.text_content() == _shown(before.values[name]), name
            assert cell.get_attribute("title") == f"read at {_wall(before.read_at)}"
        else:
            assert cell.text_content() == _shown(last.values[name]), name
            assert cell.get_attribute("title") is None
        assert house.locator(f'[data-field="{name}"]').text_content() == ""
    if phone:  # a card per meter: the other protocol's registers are no line of it
        assert not _visible(sized, '#meters tr[data-meter="house"] [data-field="voltage_l1"]')
        assert not _visible(sized, '#meters tr[data-meter="flat"] [data-field="tariff_1"]')
        assert _visible(sized, '#meters tr[data-meter="flat"] [data-field="voltage_l1"]')
        label = sized.evaluate(
            """getComputedStyle(document.querySelector(
                 '#meters tr[data-meter="flat"] [data-field="current_l3"]'), '::before').content"""
        )
        assert label == '"Current L3 (A)"'
    _no_sideways_scroll(sized)
    assert errors == []


def test_the_kmp_meters_page(sized: Any, both_url: str, kmp: KmpHistory) -> None:
    errors = _watch(sized)
    sized.goto(f"{both_url}/meters/flat?bucket=hour")
    sized.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    last, before = kmp.readings[-1], kmp.readings[-2]
    assert sized.locator("#kmp-power").text_content() == f"{_shown(last.values['power'])} W"
    assert sized.locator("#kmp-energy").text_content() == f"{_shown(last.values['energy'])} kWh"
    for name in PHASES:
        cell = sized.locator(f'#phases [data-register="{name}"]')
        if name in LEFT_OUT:  # from the reading before, marked with its time
            assert cell.text_content() == _shown(before.values[name]), name
            assert cell.get_attribute("data-older") is not None
            assert cell.get_attribute("title") == f"read at {_wall(before.read_at)}"
        else:
            assert cell.text_content() == _shown(last.values[name]), name
            assert cell.get_attribute("data-older") is None
    # no tariff or peak plot for a meter that has neither; its power and phases are plotted
    assert sized.locator("#plot-tariffs, #plot-peaks").count() == 0
    traces = sized.evaluate(
        """['plot-phases-power', 'plot-phases-voltage'].map(id =>
             document.getElementById(id).data.map(t => [t.name, t.y.length, t.y.at(-1)]))"""
    )
    count = len(kmp.readings)
    assert traces[0] == [
        ["total", count, float(last.values["power"])],
        *([f"L{n}", count, float(last.values[f"power_l{n}"])] for n in (1, 2, 3)),
    ]
    assert [t[:2] for t in traces[1]] == [
        *([f"L{n} V", count] for n in (1, 2, 3)),
        *([f"L{n} A", count] for n in (1, 2, 3)),
    ]
    assert traces[1][1][2] is None  # L2's voltage, left out of the last answer: a gap
    assert traces[1][0][2] == float(last.values["voltage_l1"])
    health = sized.evaluate("document.getElementById('plot-health').data.map(t => t.x.length)")
    # a readout of two exchanges took two attempts without a retry (KMP counts each exchange)
    assert health[:3] == [
        sum(r.attempts == r.exchanges for r in kmp.readings),
        sum(r.attempts > r.exchanges for r in kmp.readings),
        len(kmp.failures),
    ]
    assert 0 < health[1] < health[0]
    _no_sideways_scroll(sized)
    assert sized.locator("#plot-phases-power .main-svg").count() > 0  # drawn, not only kept
    energy = sized.evaluate("document.getElementById('plot-energy').data[0].y")
    assert len(energy) > 12 and sum(energy) > 0  # the energy per hour of its readings
    boxes = sized.evaluate(
        "[...document.querySelectorAll('#plots .main-svg, #phases')]"
        ".map(e => e.getBoundingClientRect().right)"
    )
    assert boxes and max(boxes) <= sized.evaluate("window.innerWidth") + 0.5
    # the script keeps the values: a refresh writes them again from /api/meters/flat
    sized.evaluate(
        "document.querySelectorAll('#kmp-latest [data-register]')"
        ".forEach(e => { e.textContent = 'stale'; })"
    )
    loaded = sized.get_attribute("#plots", "data-loaded")
    sized.select_option("#bucket", "day")
    sized.wait_for_function(
        "before => document.getElementById('plots').dataset.loaded !== before",
        arg=loaded,
        timeout=10_000,
    )
    assert sized.locator("#phases [data-register='voltage_l1']").text_content() == _shown(
        last.values["voltage_l1"]
    )
    assert sized.locator("#kmp-power").text_content() == f"{_shown(last.values['power'])} W"
    assert errors == []


def test_the_mode_a_meters_page_is_as_it_was(sized: Any, both_url: str) -> None:
    errors = _watch(sized)
    sized.goto(f"{both_url}/meters/house?bucket=day")
    sized.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    assert sized.locator("#kmp-latest").count() == 0
    for plot in ("plot-energy", "plot-tariffs", "plot-peaks", "plot-health"):
        assert sized.evaluate(f"document.getElementById('{plot}').data.length") > 0, plot
    _no_sideways_scroll(sized)
    assert errors == []
