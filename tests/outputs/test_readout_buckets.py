"""The readout-duration histograms resolve both protocols' readouts: a KMP readout (about
0.45 s at 9600 baud, 2.4 s at 1200 8N2) in buckets of its own below 0.5 s and 2.5 s, and a
mode A readout (about 6.5 s at 300 baud) between 6 and 7 s; in the exposition Prometheus scrapes,
accepted by ``promtool``, and as the docs and the dashboard say."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.outputs import build_outputs
from kamstrup382.outputs.metrics import BUCKETS
from kamstrup382.outputs.prometheus import PrometheusOutput
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config

from .helpers import kmp_reading, reading
from .scrape import promtool_check_metrics, scrape, scrape_text, value

DOCS = Path(__file__).parents[2] / "docs" / "publishing.md"
PER_METER = "kamstrup382_readout_duration_seconds"
FLEET = "kamstrup382_fleet_readout_duration_seconds"


def le(bound: float) -> str:
    """A bucket's ``le`` label as prometheus-client writes it."""
    return str(float(bound))


async def test_kmp_and_mode_a_readouts_land_in_buckets_of_their_own(
    output: PrometheusOutput,
) -> None:
    # KMP at 9600 baud: the collector's four exchanges (0.449 s with the emulator), and
    # `k382 read`'s two (0.316 s); at 1200 baud 8N2: the collector's four (2.375 s)
    kmp = [
        replace(kmp_reading("flat", i), duration=seconds)
        for i, seconds in enumerate((0.449, 0.316, 2.375))
    ]
    await output.publish([*kmp, reading("house", 0)], [])  # mode A: 6.5 s
    text = await scrape_text(output)
    assert await promtool_check_metrics(text) == ""
    families = await scrape(output)
    _, samples = families[PER_METER]
    flat = {
        s.labels["le"]: s.value
        for s in samples
        if s.name == f"{PER_METER}_bucket" and s.labels["meter"] == "flat"
    }
    # cumulative counts: the 9600-baud readouts below 0.5 s, each in a bucket of its own
    assert (flat[le(0.1)], flat[le(0.25)], flat[le(0.4)], flat[le(0.5)]) == (0, 0, 1, 2)
    assert (flat[le(1.0)], flat[le(2.0)], flat[le(2.5)], flat["+Inf"]) == (2, 2, 3, 3)
    assert value(samples, f"{PER_METER}_bucket", meter="house", le=le(0.5)) == 0
    assert value(samples, f"{PER_METER}_bucket", meter="house", le=le(6.0)) == 0
    assert value(samples, f"{PER_METER}_bucket", meter="house", le=le(7.0)) == 1
    _, fleet = families[FLEET]  # each protocol's readouts apart
    assert value(fleet, f"{FLEET}_bucket", protocol="kmp", le=le(0.4)) == 1
    assert value(fleet, f"{FLEET}_bucket", protocol="kmp", le=le(0.5)) == 2
    assert value(fleet, f"{FLEET}_bucket", protocol="kmp", le=le(7.0)) == 3
    assert value(fleet, f"{FLEET}_bucket", protocol="iec", le=le(6.0)) == 0
    assert value(fleet, f"{FLEET}_bucket", protocol="iec", le=le(7.0)) == 1


async def test_a_collected_kmp_readout_lands_in_a_bucket_of_its_own(tmp_path: Path) -> None:
    """The collector reads a 382Jx3 from the KMP emulator at the true 9600 baud; the
    readout's own duration, scraped, is in the bucket between the two bounds around it, both
    under a second (0.4 and 0.5 s unloaded), not in the lowest bucket (0.5 s before)."""
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    clock = ManualClock(datetime(2026, 3, 1, 10, 1, tzinfo=UTC))
    with KmpEmulatorThread(1) as kmp:
        config = make_config(
            url,
            kmp.ports,
            extra='[prometheus]\nlisten = "127.0.0.1:0"\n',
            meter_extra={0: 'protocol = "kmp"'},
        )
        [exporter] = build_outputs(config.sections, [m.name for m in config.meters])
        assert isinstance(exporter, PrometheusOutput)
        with open_storage(url) as storage:
            async with Collector(config, storage, [exporter], clock=clock) as collector:
                assert (await collector.run_once()).ok
                text = await scrape_text(exporter)
                families = await scrape(exporter)
            [record] = list(storage.readings())
    assert await promtool_check_metrics(text) == ""
    assert record.protocol == "kmp"
    _, samples = families[PER_METER]
    counts = {b: value(samples, f"{PER_METER}_bucket", meter="m0", le=le(b)) for b in BUCKETS}
    holding = [b for b, count in counts.items() if count == 1]
    assert holding == [b for b in BUCKETS if b >= record.duration], (record.duration, counts)
    # the bucket it lands in: the bound just above its duration, and one below it besides 0
    upper = holding[0]
    lower = BUCKETS[BUCKETS.index(upper) - 1] if upper != BUCKETS[0] else 0.0
    assert lower > 0 and lower < record.duration <= upper, (record.duration, counts)
    assert upper <= 1.0, (record.duration, counts)  # 0.45 s unloaded: in (0.4, 0.5]


def test_the_docs_and_the_dashboard_give_the_buckets_as_they_are() -> None:
    text = DOCS.read_text(encoding="utf-8")
    [row] = [line for line in text.splitlines() if line.startswith(f"| `{PER_METER}`")]
    listed = re.search(r"buckets \(`le`\) ([0-9., and]+) s", row)
    assert listed is not None, row
    bounds = [float(b) for b in re.split(r", | and ", listed.group(1))]
    assert bounds == list(BUCKETS)
    series = f"readout histogram is {len(BUCKETS) + 3} series ({len(BUCKETS)} buckets, `+Inf`,"
    assert series in " ".join(text.split())
    dashboard = json.loads(
        resources.files("kamstrup382").joinpath("data", "grafana-dashboard.json").read_text()
    )
    [panel] = [p for p in dashboard["panels"] if p.get("title") == "Readout duration (all meters)"]
    assert f"buckets from {BUCKETS[0]} to {BUCKETS[-1]:g} s" in panel["description"]
