"""A TCP address given where a port URL belongs gets a hint, on the command line and in a config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.collector.config import parse_config
from kamstrup382.errors import ConfigError, UsageError
from kamstrup382.reader.port import PortKind, parse_port


@pytest.mark.parametrize("text", ["127.0.0.1:4001", "gw.local:4001", "[::1]:4001", "gw:1"])
def test_host_and_port_without_a_scheme(text: str) -> None:
    with pytest.raises(UsageError, match=f"did you mean socket://{re.escape(text)}"):
        parse_port(text)


@pytest.mark.parametrize("text", ["/dev/ttyUSB0", "COM3", "/dev/serial/by-path/pci-0:1.0-port0"])
def test_device_paths_stay_devices(text: str) -> None:
    assert parse_port(text).kind is PortKind.DEVICE


def test_an_existing_file_named_like_an_address_is_a_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ttyX:1").touch()
    assert parse_port("ttyX:1").kind is PortKind.DEVICE


def test_read_says_it_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["read", "127.0.0.1:4001"]) == 2
    err = capsys.readouterr().err
    assert "did you mean socket://127.0.0.1:4001" in err
    assert len(err.strip().splitlines()) == 1


def test_a_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"meters\[0\]\.port.*did you mean socket://"):
        parse_config({"meters": [{"name": "a", "port": "192.168.1.50:4001"}]}, env={})


def test_a_missing_device_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["read", "/dev/ttyK382-not-there", "--retries", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("/dev/ttyK382-not-there") == 1, err
    assert "no such device" in err
    assert "Errno" not in err
