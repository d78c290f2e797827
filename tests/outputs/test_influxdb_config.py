"""The ``[influxdb]`` table: defaults, every bad value names its key, secrets from the
environment and never shown, the output built only when configured."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.collector.config import parse_config
from kamstrup382.errors import ConfigError
from kamstrup382.outputs import build_outputs
from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.outputs.influxdb_settings import InfluxSettings

METERS = [{"name": "house", "port": "socket://127.0.0.1:4001"}]
BASE = {"url": "http://influx.local", "database": "energy"}


def config(**sections: Any) -> dict[str, Any]:
    return {"meters": METERS, "storage": {"url": "sqlite:///x.sqlite"}, **sections}


def test_defaults() -> None:
    s = InfluxSettings.parse(BASE)
    assert s.url == "http://influx.local:8086"
    assert s.write_url == "http://influx.local:8086/write?db=energy&precision=ns"
    assert (s.measurement, s.precision, s.batch_size) == ("kamstrup382", "ns", 5000)
    assert (s.timeout, s.retry_delay, s.retry_max) == (10.0, 1.0, 60.0)
    assert (s.login_retry, s.login_retry_max) == (300.0, 3600.0)
    assert s.username is s.password is s.token is None
    assert s.client_id.startswith("kamstrup382-")
    assert s.headers() == {"Content-Type": "text/plain; charset=utf-8"}
    assert s.tls_context() is True  # plain http: nothing to verify


def test_every_setting_is_read() -> None:
    s = InfluxSettings.parse(
        {
            "url": "https://[::1]:8443/influx/",
            "database": "my db",
            "retention_policy": "a year",
            "measurement": "power meters",
            "tags": {"site": "home", "floor": "1"},
            "precision": "S",
            "username": "k382",
            "password": "pw",
            "verify": False,
            "batch_size": 100,
            "timeout": "5s",
            "retry_delay": "500ms",
            "retry_max": "1m",
            "login_retry": "1m",
            "login_retry_max": "2h",
            "stop_timeout": 3,
            "outbox_lease": "30s",
            "client_id": "collector-1",
            "state_file": "~/influx.json",
        }
    )
    assert s.url == "https://[::1]:8443/influx"
    assert s.write_url == ("https://[::1]:8443/influx/write?db=my%20db&precision=s&rp=a%20year")
    assert dict(s.tags) == {"site": "home", "floor": "1"}
    assert (s.batch_size, s.timeout, s.retry_delay, s.retry_max) == (100, 5.0, 0.5, 60.0)
    assert (s.login_retry, s.login_retry_max, s.stop_timeout, s.outbox_lease) == (
        60.0,
        7200.0,
        3.0,
        30.0,
    )
    assert s.state_file is not None and not s.state_file.startswith("~")
    assert s.tls_context() is False
    basic = s.headers()["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic) == b"k382:pw"
    token = InfluxSettings.parse({**BASE, "token": "t0ken"})
    assert token.headers()["Authorization"] == "Token t0ken"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"database": "x"}, "influxdb.url"),
        ({"url": "http://h"}, "influxdb.database"),
        ({**BASE, "color": "red"}, "influxdb.color"),
        ({**BASE, "url": "udp://h"}, "influxdb.url"),
        ({**BASE, "url": "http://u:p@h"}, "influxdb.url"),
        ({**BASE, "url": "http://h/?db=x"}, "influxdb.url"),
        ({**BASE, "url": "http://:8086"}, "influxdb.url"),
        ({**BASE, "url": "http://h:0"}, "influxdb.url"),
        ({**BASE, "database": ""}, "influxdb.database"),
        ({**BASE, "measurement": "#m"}, "influxdb.measurement"),
        ({**BASE, "measurement": "a\\b"}, "influxdb.measurement"),
        ({**BASE, "tags": "site=home"}, "influxdb.tags"),
        ({**BASE, "tags": {"meter": "x"}}, "influxdb.tags.meter"),
        ({**BASE, "tags": {"site": ""}}, "influxdb.tags.site"),
        ({**BASE, "tags": {"time": "x"}}, "influxdb.tags.time"),
        ({**BASE, "tags": {"site": 3}}, "influxdb.tags.site"),
        ({**BASE, "precision": "h"}, "influxdb.precision"),
        ({**BASE, "password": "pw"}, "influxdb.username"),
        ({**BASE, "username": "u"}, "influxdb.password"),
        ({**BASE, "username": "u", "password": "p", "token": "t"}, "influxdb.token"),
        ({**BASE, "ca_file": "/nonexistent/ca.pem"}, "influxdb.ca_file"),
        ({**BASE, "verify": False}, "influxdb.verify"),
        ({**BASE, "verify": "maybe"}, "influxdb.verify"),
        ({**BASE, "batch_size": 0}, "influxdb.batch_size"),
        ({**BASE, "batch_size": 100_001}, "influxdb.batch_size"),
        ({**BASE, "timeout": "soon"}, "influxdb.timeout"),
        ({**BASE, "retry_delay": 10, "retry_max": 5}, "influxdb.retry_max"),
        ({**BASE, "login_retry": 10, "login_retry_max": 5}, "influxdb.login_retry_max"),
        ({**BASE, "timeout": 40}, "influxdb.outbox_lease"),
    ],
)
def test_a_bad_value_names_its_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        InfluxSettings.parse(section)
    assert caught.value.key == key


def test_a_ca_file_only_with_https(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as caught:
        InfluxSettings.parse({**BASE, "ca_file": str(ca)})
    assert caught.value.key == "influxdb.ca_file"
    bad = InfluxSettings.parse({**BASE, "url": "https://h", "ca_file": str(ca)})
    with pytest.raises(ConfigError, match="cannot load") as loading:
        bad.tls_context()
    assert loading.value.key == "influxdb.ca_file"


def test_secrets_come_from_the_environment_and_are_never_shown() -> None:
    parsed = parse_config(
        config(influxdb={**BASE, "username": "k382", "password": "in-file"}),
        env={"K382_INFLUXDB_PASSWORD": "s3cret", "K382_INFLUXDB_BATCH_SIZE": "10"},
    )
    [output] = build_outputs(parsed.sections, ["house"])
    assert isinstance(output, InfluxOutput)
    assert output.settings.password == "s3cret"
    assert output.settings.batch_size == 10
    token = InfluxSettings.parse({**BASE, "token": "t0ken-value"})
    for shown in (repr(output.settings), repr(token), str(token)):
        assert "s3cret" not in shown and "t0ken-value" not in shown
    with pytest.raises(ConfigError) as caught:
        InfluxSettings.parse({**BASE, "token": "secret\n"})
    assert "secret" not in str(caught.value).replace("influxdb.token", "")


def test_the_output_is_off_unless_configured_and_drains_its_own_queue() -> None:
    assert build_outputs(parse_config(config(), env={}).sections, ["house"]) == []
    parsed = parse_config(
        config(mqtt={"url": "mqtt://localhost"}, influxdb=BASE), env={"K382_INFLUXDB_TOKEN": "t"}
    )
    mqtt, influx = build_outputs(parsed.sections, ["house"])
    assert isinstance(influx, InfluxOutput) and influx.uses_outbox
    assert influx.settings.token == "t"  # K382_INFLUXDB_TOKEN: the token kept out of the file
    assert {mqtt.name, influx.name} == {"mqtt", "influxdb"}  # two queues of the outbox
