"""The dashboard's live power: the two API operations (JSON, CSV, 404 without a pulse input)
and, in a real Chromium, the figure that follows the stored live row within the poll interval
and the per-minute plot drawn from the stored minutes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from kamstrup382.storage import LivePower, PowerMinute
from kamstrup382.storage.base import Storage
from kamstrup382.storage.url import open_storage
from kamstrup382.web import create_app
from kamstrup382.web.power import LIVE_EVERY
from tests.web.conftest import LiveServer, filled_storage
from tests.web.history import History

MINUTES = 90


@pytest.fixture
def power_db(tmp_path: Path, history: History) -> Iterator[Path]:
    path = tmp_path / "power.sqlite"
    storage = filled_storage(path, history)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = [
        PowerMinute("house", now - (MINUTES - i) * timedelta(minutes=1), 40, 2400.0, 2300.0, 2500.0)
        for i in range(MINUTES)
    ]
    old = PowerMinute("house", now - timedelta(days=3), 10, 600.0, 500.0, 700.0)
    live = LivePower("house", datetime.now(UTC), 2400.04, Decimal("1234.567"), 812, True)
    storage.store_power([*minutes, old], [live])
    storage.close()
    yield path


@pytest.fixture
def power_storage(power_db: Path) -> Iterator[Storage]:
    storage = open_storage(f"sqlite:///{power_db}")
    yield storage
    storage.close()


async def test_the_live_figure_and_the_minutes(power_storage: Storage) -> None:
    app = create_app(power_storage)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        live = (await client.get("/api/meters/house/power")).json()
        assert (live["watts"], live["energy_kwh"], live["pulses"]) == (2400.0, 1234.567, 812)
        assert live["connected"] is True and 0 <= live["age"] < 60
        minutes = (await client.get("/api/meters/house/power/minutes")).json()
        assert len(minutes["rows"]) == MINUTES  # the last 24 hours: not the one 3 days old
        assert minutes["rows"][0] == {
            "minute": minutes["rows"][0]["minute"],
            "pulses": 40,
            "mean_w": 2400.0,
            "min_w": 2300.0,
            "max_w": 2500.0,
        }
        wide = await client.get(
            "/api/meters/house/power/minutes",
            params={"since": "2000-01-01T00:00:00Z", "limit": 5, "format": "csv"},
        )
        lines = wide.text.splitlines()
        assert lines[0] == "minute,pulses,mean_w,min_w,max_w" and len(lines) == 6
        assert lines[1].endswith(",10,600.0,500.0,700.0")  # the old one first
        missing = await client.get("/api/meters/nobody/power")
        assert missing.status_code == 404
        bad = await client.get("/api/meters/house/power/minutes", params={"bucket": "x"})
        assert bad.status_code == 400


async def test_a_meter_without_pulse_input_has_no_live_power(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/meters/house/power")
    assert response.status_code == 404
    assert "no pulse input" in response.json()["detail"]


@pytest.mark.browser
def test_the_page_follows_the_live_figure(page: Any, power_db: Path) -> None:
    with open_storage(f"sqlite:///{power_db}") as served, LiveServer(create_app(served)) as live:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live.url}/meters/house")
        page.wait_for_selector("#power:not([hidden])", timeout=30_000)
        now = page.locator("#power-now")
        assert float(now.get_attribute("data-watts") or "nan") == 2400.0
        assert now.inner_text() == "2,400 W"
        page.wait_for_function(
            "() => (document.getElementById('plot-power').data || []).length === 3",
            timeout=30_000,
        )
        points = page.evaluate("document.getElementById('plot-power').data[0].y")
        assert points == [2400.0] * MINUTES
        with open_storage(f"sqlite:///{power_db}") as writer:
            started = time.monotonic()
            writer.store_power(
                live=[LivePower("house", datetime.now(UTC), 5123.0, None, 900, True)]
            )
            page.wait_for_function(
                "() => Number(document.getElementById('power-now').dataset.watts) === 5123",
                timeout=(LIVE_EVERY + 3) * 1000,
            )
            assert time.monotonic() - started <= LIVE_EVERY + 1.5
        assert now.inner_text() == "5,123 W"
        assert errors == []


@pytest.mark.browser
def test_the_section_stays_hidden_without_a_pulse_input(page: Any, live_url: str) -> None:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{live_url}/meters/house")
    page.wait_for_selector("#plots[data-loaded]", timeout=30_000)
    assert page.locator("#power").count() == 0
    assert errors == []  # nothing asked that is not there
