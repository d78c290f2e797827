"""A broker that refuses the login, against a real mosquitto with a password file and
``allow_anonymous false``: the output says ``login_refused`` (its state, the metrics, the state
file that ``k382 status`` reads), tries again only after the long ``login_retry`` whatever the
collector stores meanwhile, and with the right password publishes everything that waited.
"""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.outputs import build_outputs
from kamstrup382.outputs.health import read_health
from kamstrup382.outputs.mqtt import MqttOutput, login_refused
from kamstrup382.outputs.prometheus import PrometheusOutput
from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import PATIENCE, Watcher, reading
from .scrape import scrape, value
from .test_mqtt import store_and_publish

pytestmark = pytest.mark.mosquitto

#: The first wait after a refused login in these tests (a real collector: minutes).
RETRY = 1.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "readings.sqlite"


@pytest.fixture
def storage(db: Path) -> Iterator[Storage]:
    with open_storage(f"sqlite:///{db}") as store:
        yield store


def _sections(broker: MosquittoBroker, password: str, protocol: str) -> dict[str, object]:
    return {
        "mqtt": {
            "url": broker.url,
            "client_id": "k382-login-test",
            "username": "k382",
            "password": password,
            "protocol": protocol,
            "reconnect_delay": 0.05,
            "reconnect_max": 0.2,
            "login_retry": RETRY,
            "login_retry_max": 2 * RETRY,
            "stop_timeout": 0.5,
            "timeout": 5,
        },
        "prometheus": {"listen": "127.0.0.1:0"},
    }


def _refusals_in_log(broker: MosquittoBroker) -> int:
    """Connections the broker refused, from its own log (the only client here is ours)."""
    lines = broker.log_file.read_text(errors="replace").splitlines()
    return sum("disconnected, not authori" in line for line in lines)


async def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_refused_login_is_its_own_state_retried_slowly_and_loses_nothing(
    mosquitto_auth: MosquittoBroker,
    storage: Storage,
    db: Path,
    capsys: pytest.CaptureFixture[str],
    protocol: str,
) -> None:
    broker = mosquitto_auth
    mqtt, prometheus = build_outputs(_sections(broker, "wrong", protocol), ["house"])
    assert isinstance(mqtt, MqttOutput) and isinstance(prometheus, PrometheusOutput)
    await prometheus.start(storage)
    await mqtt.start(storage)
    try:
        await store_and_publish(storage, mqtt, [reading("house", 0)])
        await _until(lambda: mqtt.state == "login_refused", "the refusal")
        refused_at = time.monotonic()
        # the collector keeps storing (each batch wakes the output): no new login for that
        index = 1
        while time.monotonic() - refused_at < 2.5 * RETRY:
            await store_and_publish(storage, mqtt, [reading("house", index)])
            index += 1
            await asyncio.sleep(0.1)
        # tries at 0, RETRY and 3 * RETRY: at most two in 2.5 retries (not one per 0.05 s)
        assert 1 <= mqtt.connect_attempts <= 2, mqtt.connect_attempts
        assert mqtt.login_refusals == mqtt.connect_attempts
        assert mqtt.connections == 0
        assert _refusals_in_log(broker) == mqtt.login_refusals
        assert mqtt.state == "login_refused"
        assert mqtt.last_error is not None and "authori" in mqtt.last_error.lower()

        metrics = await scrape(prometheus)
        _, states = metrics["kamstrup382_output_state"]
        assert value(states, "kamstrup382_output_state", output="mqtt", state="login_refused") == 1
        assert value(states, "kamstrup382_output_state", output="mqtt", state="unreachable") == 0
        _, refusals = metrics["kamstrup382_output_login_refusals"]
        assert value(refusals, "kamstrup382_output_login_refusals_total", output="mqtt") == float(
            mqtt.login_refusals
        )

        # the state file beside the database (its owner's only), and `k382 status` reading it
        state_file = db.with_name(f"{db.name}.mqtt.json")
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        health = read_health(state_file)
        assert health is not None and health.state == "login_refused"
        assert health.retry_at is not None and health.since < health.retry_at
        assert health.counters["login_refusals"] == mqtt.login_refusals
        config = db.parent / "k382.toml"
        config.write_text(
            f'[storage]\nurl = "sqlite:///{db}"\n[[meters]]\nname = "house"\n'
            f'port = "socket://127.0.0.1:1"\n[mqtt]\nurl = "{broker.url}"\n'
        )
        assert main(["status", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        (line,) = [x for x in out.splitlines() if x.startswith("mqtt ")]
        assert "login_refused" in line and "next try" in line, out
    finally:
        await mqtt.stop()
        await prometheus.stop()
    pending = await asyncio.to_thread(storage.outbox_pending)
    assert len(pending) == index  # every reading waits

    # the right password (the config changed, the collector restarted) delivers them all
    sections = _sections(broker, "s3cret", protocol)
    async with Watcher(
        broker.host, broker.port, ["kamstrup382/#"], username="k382", password="s3cret"
    ) as watcher:
        (right,) = build_outputs({"mqtt": sections["mqtt"]}, ["house"])
        assert isinstance(right, MqttOutput)
        await right.start(storage)
        try:
            states = await watcher.wait_count("kamstrup382/house/state", index)
            assert right.state == "connected"
            assert right.login_refusals == 0
            health = read_health(db.with_name(f"{db.name}.mqtt.json"))
            assert health is not None and health.state == "connected" and health.detail is None
        finally:
            await right.stop()
    assert [s.json()["registers"]["energy"]["value"] for s in states] == [
        reading("house", i).values.energy for i in range(index)
    ]
    assert await asyncio.to_thread(storage.outbox_pending) == []
    health = read_health(db.with_name(f"{db.name}.mqtt.json"))
    assert health is not None and health.state == "stopped"


async def test_an_unreachable_broker_is_not_a_refused_login(storage: Storage) -> None:
    """Nothing listens: the short reconnect loop, state ``unreachable``, no refusal counted."""
    output = MqttOutput.from_config(
        {
            "url": "mqtt://127.0.0.1:1",
            "reconnect_delay": 0.05,
            "reconnect_max": 0.1,
            "login_retry": 60,
            "stop_timeout": 0.2,
        },
        ["house"],
    )
    await output.start(storage)
    try:
        await _until(lambda: output.connect_attempts >= 3, "three attempts")
        assert output.state == "unreachable"
        assert output.login_refusals == 0
        assert not login_refused(ConnectionRefusedError())
    finally:
        await output.stop()
    assert output.state == "stopped"
