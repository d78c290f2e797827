"""The ``[mqtt]`` and ``[prometheus]`` tables: defaults, every bad value names its key, the
environment overrides secrets, and both outputs are off unless configured."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.collector.config import parse_config
from kamstrup382.errors import ConfigError
from kamstrup382.outputs import build_outputs
from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.outputs.mqtt import MqttOutput, MqttSettings
from kamstrup382.outputs.prometheus import PrometheusOutput

METERS = [{"name": "house", "port": "socket://127.0.0.1:4001"}]


def config(**sections: Any) -> dict[str, Any]:
    return {"meters": METERS, "storage": {"url": "sqlite:///x.sqlite"}, **sections}


def test_defaults() -> None:
    settings = MqttSettings.parse({"url": "mqtt://broker.local"})
    assert (settings.host, settings.port, settings.tls) == ("broker.local", 1883, False)
    assert settings.topic_prefix == "kamstrup382"
    assert settings.discovery_prefix == "homeassistant"
    assert settings.discovery is True
    assert settings.qos == 1
    assert settings.retain is True
    assert settings.protocol == "3.1.1"
    assert settings.username is None and settings.password is None
    assert settings.client_id.startswith("kamstrup382-")
    assert settings.outbox_lease == 60.0  # the claim of a shared outbox, see test_mqtt_shared
    # a refused login waits minutes, up to an hour (test_mqtt_login); no state file named
    assert (settings.login_retry, settings.login_retry_max) == (300.0, 3600.0)
    assert settings.state_file is None
    named = MqttSettings.parse({"url": "mqtt://b", "state_file": "~/k382/mqtt.json"})
    assert named.state_file is not None and not named.state_file.startswith("~")
    tls = MqttSettings.parse({"url": "mqtts://broker.local"})
    assert (tls.port, tls.tls) == (8883, True)
    assert MqttSettings.parse({"url": "mqtt://[::1]:1884"}).host == "::1"


def test_both_outputs_are_off_unless_configured() -> None:
    assert build_outputs(parse_config(config(), env={}).sections, ["house"]) == []
    parsed = parse_config(
        config(mqtt={"url": "mqtt://localhost"}, prometheus={"listen": "127.0.0.1:0"}), env={}
    )
    mqtt, prometheus = build_outputs(parsed.sections, ["house"])
    assert isinstance(mqtt, MqttOutput) and mqtt.uses_outbox
    assert isinstance(prometheus, PrometheusOutput) and not prometheus.uses_outbox


def test_the_password_comes_from_the_environment() -> None:
    parsed = parse_config(
        config(mqtt={"url": "mqtt://localhost", "username": "k382", "password": "in-file"}),
        env={"K382_MQTT_PASSWORD": "s3cret", "K382_MQTT_RETAIN": "false"},
    )
    (output,) = build_outputs(parsed.sections, ["house"])
    assert isinstance(output, MqttOutput)
    assert output.settings.password == "s3cret"
    assert output.settings.retain is False
    assert "s3cret" not in repr(output.settings)


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ({}, "mqtt.url", "missing"),
        ({"url": "http://broker"}, "mqtt.url", "scheme"),
        ({"url": "mqtt://"}, "mqtt.url", "no host"),
        ({"url": "mqtt://broker:70000"}, "mqtt.url", "bad URL"),
        ({"url": "mqtt://user:pw@broker"}, "mqtt.url", "mqtt.username"),
        ({"url": "mqtt://broker/topic"}, "mqtt.url", "path"),
        ({"url": 1883}, "mqtt.url", "string"),
        ({"url": "mqtt://b", "qos": 3}, "mqtt.qos", "between 0 and 2"),
        ({"url": "mqtt://b", "qos": "one"}, "mqtt.qos", "integer"),
        ({"url": "mqtt://b", "retain": "maybe"}, "mqtt.retain", "true or false"),
        ({"url": "mqtt://b", "topic_prefix": "a/#"}, "mqtt.topic_prefix", "wildcards"),
        ({"url": "mqtt://b", "discovery_prefix": "/ha"}, "mqtt.discovery_prefix", "'/'"),
        ({"url": "mqtt://b", "protocol": "4"}, "mqtt.protocol", "3.1.1"),
        ({"url": "mqtt://b", "password": "x"}, "mqtt.username", "needs a username"),
        ({"url": "mqtt://b", "ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file", "no such file"),
        ({"url": "mqtt://b", "insecure": True}, "mqtt.insecure", "mqtts"),
        ({"url": "mqtt://b", "keepalive": 0}, "mqtt.keepalive", "between"),
        ({"url": "mqtt://b", "reconnect_delay": "soon"}, "mqtt.reconnect_delay", "duration"),
        ({"url": "mqtt://b", "reconnect_delay": 10, "reconnect_max": 5}, "mqtt.reconnect_max", ""),
        (
            {"url": "mqtt://b", "login_retry": "1h", "login_retry_max": "5m"},
            "mqtt.login_retry_max",
            "",
        ),
        ({"url": "mqtt://b", "login_retry": "1e300"}, "mqtt.login_retry", ""),
        ({"url": "mqtt://b", "login_retry": 0}, "mqtt.login_retry", ""),
        ({"url": "mqtt://b", "state_file": ""}, "mqtt.state_file", "empty"),
        ({"url": "mqtt://b", "batch_size": 0}, "mqtt.batch_size", "between"),
        ({"url": "mqtt://b", "outbox_lease": "15s"}, "mqtt.outbox_lease", "twice mqtt.timeout"),
        ({"url": "mqtt://b", "hostname": "x"}, "mqtt.hostname", "unknown key"),
    ],
)
def test_bad_values_name_their_key(section: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MqttSettings.parse(section)
    assert caught.value.key == key
    assert words in str(caught.value)


def test_a_bad_table_fails_the_whole_config() -> None:
    parsed = parse_config(config(mqtt={"url": "mqtt://b", "qos": 5}), env={})
    with pytest.raises(ConfigError) as caught:
        build_outputs(parsed.sections, ["house"])
    assert caught.value.key == "mqtt.qos"


def test_tls_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    settings = MqttSettings.parse({"url": "mqtts://b", "ca_file": str(ca), "insecure": "yes"})
    assert settings.ca_file == str(ca) and settings.insecure
    with pytest.raises(ConfigError) as caught:
        settings.tls_context()  # loaded at start: a file that is no CA is named
    assert caught.value.key == "mqtt.ca_file"
    with pytest.raises(ConfigError) as caught:
        MqttSettings.parse({"url": "mqtts://b", "keyfile": str(ca)})
    assert caught.value.key == "mqtt.certfile"


def test_the_example_configs_output_tables_build_outputs() -> None:
    """The commented ``[mqtt]``, ``[influxdb]`` and ``[prometheus]`` tables of
    examples/k382.toml, uncommented, are accepted by the outputs themselves."""
    import tomllib

    example = Path(__file__).parents[2] / "examples" / "k382.toml"
    text = example.read_text(encoding="utf-8")
    lines = text[text.index("# [mqtt]") : text.index("# [http]")].splitlines()
    body = "\n".join(
        line.removeprefix("#").strip()
        for line in lines
        if line.removeprefix("#").strip().startswith("[") or "=" in line
    )
    sections = tomllib.loads(body)
    mqtt, influxdb, prometheus = build_outputs(sections, ["house"])
    assert isinstance(influxdb, InfluxOutput)
    assert influxdb.settings.write_url == (
        "http://influx.example:8086/write?db=energy&precision=ns"
    )
    assert isinstance(mqtt, MqttOutput)
    assert (mqtt.settings.host, mqtt.settings.port) == ("broker.example", 1883)
    assert mqtt.settings.username == "k382"
    assert isinstance(prometheus, PrometheusOutput)
    assert (prometheus.host, prometheus.port) == ("127.0.0.1", 9382)


def test_the_dashboard_link_home_assistant_shows_and_how_it_is_chosen() -> None:
    def chosen(http: dict[str, Any] | None, mqtt: dict[str, Any]) -> str | None:
        sections = {"mqtt": {"url": "mqtt://localhost", **mqtt}}
        parsed = parse_config(config(**sections, **({"http": http} if http else {})), env={})
        (output,) = build_outputs(
            parsed.sections, parsed.meters, dashboard_url=parsed.http.dashboard_url()
        )
        assert isinstance(output, MqttOutput)
        return output._devices.dashboard_url

    # no [http]: the dashboard is not known to be served; loopback only: not reachable
    assert chosen(None, {}) is None
    assert chosen({"listen": "127.0.0.1:8382"}, {}) is None
    # an address of this machine others reach, or the public URL (behind a proxy)
    assert chosen({"listen": "192.0.2.7:8382"}, {}) == "http://192.0.2.7:8382"
    assert chosen({"listen": "0.0.0.0:8382"}, {}) == f"http://{socket.getfqdn()}:8382"
    public = {"listen": "127.0.0.1:8382", "public_url": "https://k382.example/"}
    assert chosen(public, {}) == "https://k382.example/"
    # [mqtt] configuration_url wins; "" says none
    assert chosen(public, {"configuration_url": "http://other:1/"}) == "http://other:1/"
    assert chosen(public, {"configuration_url": ""}) is None


@pytest.mark.parametrize("url", ["ftp://x/", "k382.example", "https://u:p@x/", "http://x/?a=1"])
def test_a_dashboard_url_must_be_one_a_browser_opens(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        MqttSettings.parse({"url": "mqtt://localhost", "configuration_url": url})
    assert err.value.key == "mqtt.configuration_url"
    with pytest.raises(ConfigError) as err:
        parse_config(config(http={"public_url": url}), env={})
    assert err.value.key == "http.public_url"


def test_meters_reach_the_output_with_their_interval_and_unique_id() -> None:
    meters = [
        {**METERS[0], "interval": "1h", "unique_id": "house-main"},
        {"name": "garage", "port": "socket://127.0.0.1:4002"},
    ]
    parsed = parse_config({**config(mqtt={"url": "mqtt://localhost"}), "meters": meters}, env={})
    (output,) = build_outputs(parsed.sections, parsed.meters)
    assert isinstance(output, MqttOutput)
    house = output._devices.setup("house")
    assert (house.interval, house.unique_id) == (timedelta(hours=1), "house-main")
    assert output._devices.setup("garage").unique_id is None
    # the unique_id makes the device known before any reading
    assert output._devices.ids() == {"house": "kamstrup382_house-main"}
