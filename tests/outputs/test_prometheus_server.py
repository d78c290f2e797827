"""The exposition of a running collector as Prometheus sees it: ``promtool check metrics`` on
it, the shipped alerting rules under ``promtool check rules`` and ``promtool test rules``, and a
real Prometheus server scraping the collector and answering every expression of the shipped
rules and Grafana dashboard.

The collector is ``k382 collect`` as a process: emulated meters over loopback TCP, read every
2 s at 100 times the line's speed, MQTT to a real mosquitto (so that it has an outbox), and
``[prometheus]`` on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kamstrup382.outputs.power_metrics import PowerMetrics
from kamstrup382.outputs.prometheus import PrometheusOutput
from kamstrup382.pulses.live import PowerUpdate
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker, free_port
from tests.fixtures.prometheus import JOB, PROMTOOL, PrometheusServer

from .helpers import kmp_reading
from .scrape import promtool_check_metrics

pytestmark = pytest.mark.mosquitto

METERS = 2
#: A guard against a hung test, not a speed requirement.
PATIENCE = 60.0
DATA = Path(__file__).parent / "data"


def shipped(name: str) -> str:
    """A file the package ships in ``kamstrup382/data``."""
    return resources.files("kamstrup382").joinpath("data", name).read_text(encoding="utf-8")


@dataclass
class RunningCollector:
    target: str  # host:port, as Prometheus names it

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=30) as response:
            text: str = response.read().decode()
        return text


def _successes(text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "kamstrup382_readout_successes":
            return {s.labels["meter"]: s.value for s in family.samples}
    return {}


@pytest.fixture
def collector(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[RunningCollector]:
    """``k382 collect`` running until the test ends, once each meter has a reading."""
    port = free_port()
    config = tmp_path / "k382.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path / "readings.sqlite"}"\n'
        '[collector]\ninterval = "2s"\nflush_interval = 0.05\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\nclient_id = "k382-prometheus-test"\n'
        f'[prometheus]\nlisten = "127.0.0.1:{port}"\n'
    )
    log = (tmp_path / "collect.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kamstrup382", "collect", "--config", str(config),
         "--emulator", str(METERS), "--speed", "100"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    running = RunningCollector(f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            assert process.poll() is None, (tmp_path / "collect.log").read_text()
            try:
                read = _successes(running.scrape())
                if len(read) == METERS and all(count > 0 for count in read.values()):
                    break
            except (OSError, urllib.error.URLError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "collect.log").read_text()
            time.sleep(0.1)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_promtool_check_metrics_passes_on_a_running_collector(
    collector: RunningCollector,
) -> None:
    text = collector.scrape()
    assert asyncio.run(promtool_check_metrics(text)) == ""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert not [name for name in families if name.endswith("_created")]
    assert families["kamstrup382_operating_seconds"].type == "counter"
    for name in (
        "kamstrup382_up",
        "kamstrup382_meter_info",
        "kamstrup382_last_attempt_timestamp_seconds",
        "kamstrup382_meter_interval_seconds",
        "kamstrup382_build_info",
        "kamstrup382_outbox_pending_readings",
        "kamstrup382_outbox_oldest_age_seconds",
        "kamstrup382_fleet_readout_duration_seconds",
        "kamstrup382_readout_duration_seconds",
    ):
        assert families[name].samples, name
    (pending,) = families["kamstrup382_outbox_pending_readings"].samples
    assert pending.labels == {"output": "mqtt"}


def test_the_shipped_rules_pass_promtool_and_their_unit_tests(tmp_path: Path) -> None:
    (tmp_path / "prometheus-alerts.yml").write_text(shipped("prometheus-alerts.yml"))
    shutil.copy(DATA / "prometheus-alerts-test.yml", tmp_path)
    for command in (
        [PROMTOOL, "check", "rules", "prometheus-alerts.yml"],
        [PROMTOOL, "test", "rules", "prometheus-alerts-test.yml"],
    ):
        result = subprocess.run(
            command, cwd=tmp_path, capture_output=True, timeout=120, check=False
        )
        assert result.returncode == 0, (result.stdout + result.stderr).decode()
    tested = {
        case["alertname"]
        for group in yaml.safe_load((DATA / "prometheus-alerts-test.yml").read_text())["tests"]
        for case in group["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in alert_rules()}


# -- the expressions ---------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(shipped("prometheus-alerts.yml"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


_COMPARISON = re.compile(r"(?>(==|!=|>=|<=|>|<))(?!\s*bool\b)")


def with_bool(expr: str) -> str:
    """``expr`` with ``bool`` after each comparison outside label matchers and strings: an
    alert's condition then returns 0 or 1 for every series instead of only those alerting."""
    out: list[str] = []
    depth = 0
    quoted = False
    index = 0
    while index < len(expr):
        char = expr[index]
        if quoted:
            quoted = char != '"' or expr[index - 1] == "\\"
        elif char == '"':
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0 and (match := _COMPARISON.match(expr, index)):
            out.append(f"{match.group(1)} bool")
            index = match.end()
            continue
        out.append(char)
        index += 1
    return "".join(out)


def test_with_bool() -> None:
    assert (
        with_bool('a{x!="1"} > 2 and b{y=~"c"} == 1')
        == 'a{x!="1"} > bool 2 and b{y=~"c"} == bool 1'
    )
    assert with_bool("a >= bool 2") == "a >= bool 2"


#: What Grafana puts in the dashboard's variables, for the queries run here.
VARIABLES = {"$__rate_interval": "1m", "$instance": ".*", "$meter": ".*"}
_LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)")


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every target and variable of the shipped dashboard, variables
    substituted; a ``label_values(selector, label)`` variable becomes its selector."""
    dashboard = json.loads(shipped("grafana-dashboard.json"))
    queries: list[tuple[str, str]] = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.fullmatch(variable["query"]["query"])
            assert match is not None, variable
            queries.append((f"variable {variable['name']}", match["selector"]))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    substituted = []
    for where, written in queries:
        expr = written
        for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
            expr = expr.replace(name, value)
        assert "$" not in expr, (where, expr)
        substituted.append((where, expr))
    return substituted


def test_the_dashboard_is_importable_as_it_is() -> None:
    dashboard = json.loads(shipped("grafana-dashboard.json"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "kamstrup382"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and panel["description"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
    # every family the collector exports has its panel
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for name in (
        "kamstrup382_up", "kamstrup382_meter_info", "kamstrup382_last_success_timestamp_seconds",
        "kamstrup382_energy_kwh_total", "kamstrup382_tariff_energy_kwh_total",
        "kamstrup382_peak_power_kw", "kamstrup382_pulse_input_pulses_total",
        "kamstrup382_operating_seconds_total", "kamstrup382_readout_failures_total",
        "kamstrup382_readout_successes_total", "kamstrup382_fleet_readout_duration_seconds",
        "kamstrup382_outbox_pending_readings", "kamstrup382_outbox_oldest_age_seconds",
        "kamstrup382_output_state", "kamstrup382_build_info", "kamstrup382_power_watts",
        "kamstrup382_voltage_volts", "kamstrup382_current_amperes",
        "kamstrup382_pulse_power_watts",
    ):  # fmt: skip
        assert name in exprs, name


@pytest.fixture
def kmp_exporter(tmp_path: Path) -> Iterator[str]:
    """A second exporter, in this process, holding a KMP meter's reading and a pulse input's
    live power (``k382 collect --emulator`` runs mode A meters without pulse inputs): its
    target, host:port."""
    with open_storage(f"sqlite:///{tmp_path / 'kmp.sqlite'}") as storage:
        exporter = PrometheusOutput("127.0.0.1", 0, ["flat"])
        pulses = PowerMetrics(exporter.registry)
        asyncio.run(exporter.start(storage))
        try:
            asyncio.run(exporter.publish([kmp_reading("flat", 1)], []))
            now = datetime.now(UTC)
            pulses.power(
                PowerUpdate(
                    meter="flat", at=now, watts=2410.0, bounded=False,
                    energy_kwh=Decimal("1235.12"), pulses=40, rejected=0, missed=0,
                    drift_kwh=None, pulse_at=now, connected=True, report=True,
                )
            )  # fmt: skip
            yield f"127.0.0.1:{exporter.port}"
        finally:
            asyncio.run(exporter.stop())


def test_every_expression_of_the_rules_and_the_dashboard_returns_data(
    collector: RunningCollector,
    kmp_exporter: str,
    prometheus_server: Callable[[Sequence[str], Sequence[Path]], PrometheusServer],
    tmp_path: Path,
) -> None:
    rules = tmp_path / "prometheus-alerts.yml"
    rules.write_text(shipped("prometheus-alerts.yml"))
    server = prometheus_server([collector.target, kmp_exporter], [rules])
    # a few scrapes, with readings between them (meters are read every 2 s)
    server.wait_for(f'count_over_time(up{{job="{JOB}"}}[1m]) >= 8', PATIENCE)
    server.wait_for("changes(kamstrup382_fleet_readout_duration_seconds_count[1m]) >= 2", PATIENCE)
    ups = server.samples(f'up{{job="{JOB}"}}')
    assert [up["value"][1] for up in ups] == ["1", "1"]
    # Prometheus loaded the rules and evaluates them
    with urllib.request.urlopen(f"{server.url}/api/v1/rules", timeout=30) as response:
        loaded = json.loads(response.read())["data"]["groups"]
    assert {rule["name"] for group in loaded for rule in group["rules"]} == {
        rule["alert"] for rule in alert_rules()
    }
    assert all(rule["health"] == "ok" for group in loaded for rule in group["rules"]), loaded

    queries = [(f"rule {rule['alert']}", with_bool(rule["expr"])) for rule in alert_rules()]
    queries += dashboard_queries()
    empty = [(where, expr) for where, expr in queries if not server.samples(expr)]
    assert empty == []
