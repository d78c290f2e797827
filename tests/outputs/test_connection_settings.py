"""The connection keys MQTT and InfluxDB share (:mod:`kamstrup382.outputs.connection_settings`):
each error names the table's own dotted key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kamstrup382.errors import ConfigError
from kamstrup382.outputs.connection_settings import (
    client_context,
    parse_credentials,
    parse_tls_files,
    parse_tls_switch,
)


@pytest.mark.parametrize(
    ("data", "options", "key"),
    [
        ({"password": "p"}, {}, "t.username"),
        ({"username": "u"}, {"needs_password": True}, "t.password"),
        ({"username": "u", "password": ""}, {}, "t.password"),
        ({"username": "u", "password": "p", "token": "x"}, {"token": True}, "t.token"),
        ({"username": 7}, {}, "t.username"),
    ],
)
def test_credentials_errors_name_the_tables_key(
    data: dict[str, Any], options: dict[str, bool], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_credentials(data, "t", **options)
    assert caught.value.key == key


def test_credentials_found_and_never_shown() -> None:
    assert parse_credentials({"username": "u", "password": ""}, "t", empty_password=True) == {
        "username": "u",
        "password": "",
    }
    assert parse_credentials({"token": "x"}, "t") == {}  # a table without tokens ignores it
    with pytest.raises(ConfigError) as caught:
        parse_credentials({"username": "u", "password": "s3cret\n"}, "t")
    assert "s3cret" not in str(caught.value)


def test_tls_files_and_switch(tmp_path: Path) -> None:
    pem = tmp_path / "a.pem"
    pem.write_text("not a certificate\n")
    found = parse_tls_files({"ca_file": str(pem)}, "t", ("ca_file",), tls=True, scheme="x")
    assert found == {"ca_file": str(pem)}
    cases: list[tuple[dict[str, Any], bool, str]] = [
        ({"ca_file": str(tmp_path / "none.pem")}, True, "t.ca_file"),
        ({"ca_file": str(pem)}, False, "t.ca_file"),
        ({"keyfile": str(pem)}, True, "t.certfile"),
    ]
    for data, tls, key in cases:
        with pytest.raises(ConfigError) as caught:
            parse_tls_files(data, "t", ("ca_file", "certfile", "keyfile"), tls=tls, scheme="x")
        assert caught.value.key == key
    assert parse_tls_switch({}, "t", "s", tls=False, scheme="x") is None
    assert parse_tls_switch({"s": False}, "t", "s", tls=False, scheme="x", harmless=False) is False
    for harmless in (None, False):
        with pytest.raises(ConfigError, match="only used with an x:// url") as caught:
            parse_tls_switch({"s": True}, "t", "s", tls=False, scheme="x", harmless=harmless)
        assert caught.value.key == "t.s"
    with pytest.raises(ConfigError) as caught:
        client_context("t", str(pem))
    assert caught.value.key == "t.ca_file"
    with pytest.raises(ConfigError) as caught:  # the SSL error does not say "cert"
        client_context("t", None, str(pem), str(pem))
    assert caught.value.key == "t.certfile"
