"""The value checks every table of the config file shares: each error names the key."""

from __future__ import annotations

import pytest

from kamstrup382 import settings
from kamstrup382.errors import ConfigError
from kamstrup382.protocol import BccMode
from kamstrup382.settings import Listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8382", Listen("127.0.0.1", 8382)),
        (":9000", Listen("127.0.0.1", 9000)),
        ("localhost", Listen("localhost", 8382)),
        ("[::1]", Listen("::1", 8382)),
        ("[::1]:0", Listen("::1", 0)),
        (" 0.0.0.0:80 ", Listen("0.0.0.0", 80)),
    ],
)
def test_listen_fills_in_the_default_host_or_port(text: str, expected: Listen) -> None:
    assert settings.listen(text, "http.listen") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[::1", "closing"),
        ("[::1]x", "is not"),
        ("[]:80", "empty host"),
        ("::1:80", "brackets"),
        ("a b:80", "bad host"),
        ("h:70000", "0..65535"),
        ("h:+1", "0..65535"),
        ("h:", "0..65535"),
    ],
)
def test_every_server_address_has_one_grammar(text: str, problem: str) -> None:
    for parse in (settings.listen, settings.host_port):
        with pytest.raises(ConfigError, match=problem) as info:
            parse(text, "x.listen")
        assert info.value.key == "x.listen"


def test_host_port_needs_both_parts_unless_the_host_has_a_default() -> None:
    assert settings.host_port("[::1]:9100", "k") == ("::1", 9100)
    assert settings.host_port(":9382", "k", default_host="0.0.0.0") == ("0.0.0.0", 9382)
    for text in (":9382", "host", "9382"):
        with pytest.raises(ConfigError, match="host:port"):
            settings.host_port(text, "k")


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("socket://gw", "bad port"),
        ("socket://gw:0", "out of range 1-65535"),
        ("socket://gw:65536", "bad port"),
        ("loop://", "bad port"),
        ("dev/ttyUSB0", "absolute"),
    ],
)
def test_meter_ports_follow_the_readers_syntax(port: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        settings.meter_port(port, "meters[0].port")
    assert info.value.key == "meters[0].port"


@pytest.mark.parametrize("port", ["socket://[::1]:4001", "rfc2217://gw:2217", "/dev/x", "com7"])
def test_good_meter_ports_pass(port: str) -> None:
    assert settings.meter_port(port, "k") == port


def test_storage_urls_are_checked_as_the_storage_opens_them() -> None:
    assert settings.storage_url("postgresql://u@h/db", "storage.url") == "postgresql://u@h/db"
    with pytest.raises(ConfigError, match="in-memory") as info:
        settings.storage_url("sqlite:///:memory:", "storage.url")
    assert info.value.key == "storage.url"


def test_choices_seconds_and_booleans() -> None:
    assert settings.choice(BccMode, " XOR ", "k") is BccMode.XOR
    with pytest.raises(ConfigError, match="auto, sum7, xor"):
        settings.choice(BccMode, "crc", "k")
    assert settings.seconds("250ms", "k") == 0.25
    assert settings.seconds(0, "k", allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match="> 0"):
        settings.seconds(0, "k")
    assert settings.boolean(" Off ", "k") is False
    with pytest.raises(ConfigError, match="true or false"):
        settings.boolean(1, "k")


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("socket://[zz]:1", "bad host"),
        ("rfc2217://[::1:1", "bad host"),
        ("socket://[127.0.0.1]:1", "bad host"),
        ("socket://127.0.0.1:0", "out of range 1-65535"),
    ],
)
def test_a_port_whose_host_or_tcp_port_cannot_be_used_names_the_key(
    port: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        settings.meter_port(port, "meters[0].port")
    assert info.value.key == "meters[0].port"


@pytest.mark.parametrize("value", ["9" * 5000, 10**5000], ids=["text", "int"])
def test_an_integer_too_long_to_print_is_refused_in_a_short_message(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        settings.integer(value, "mqtt.qos", low=0, high=2)
    assert info.value.key == "mqtt.qos"
    assert len(str(info.value)) < 120


@pytest.mark.parametrize("value", [1e-300, 4e-7, "0.0000001s"])
def test_a_duration_below_a_microsecond_is_refused_not_rounded_to_zero(value: object) -> None:
    with pytest.raises(ConfigError, match=r"collector\.answer_timeout: .*at least 1 microsecond"):
        settings.parse_duration(value, "collector.answer_timeout")
    assert settings.parse_duration(1e-6, "x").total_seconds() == 1e-6
