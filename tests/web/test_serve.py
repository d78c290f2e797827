"""``k382 serve`` as a user runs it: a real server process over a SQLite file, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kamstrup382.cli import main
from tests.web.conftest import filled_storage
from tests.web.history import History


@pytest.fixture
def db(tmp_path: Path, history: History) -> Path:
    path = tmp_path / "readings.sqlite"
    filled_storage(path, history).close()
    return path


def start_serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("K382_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kamstrup382", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("Dashboard on "):
        process.kill()
        rest = process.communicate()[0]
        raise AssertionError(first + rest)
    return process, first.split()[2].rstrip("/")


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    out = process.communicate(timeout=20)[0]
    assert "Traceback" not in out
    return process.returncode


def test_serve_with_a_token(db: Path, history: History) -> None:
    process, url = start_serve(
        "--storage", f"sqlite:///{db}", "--http", "127.0.0.1:0", "--token", "t0ken"
    )
    try:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/api/meters").status_code == 401
        response = httpx.get(f"{url}/api/meters", headers={"Authorization": "Bearer t0ken"})
        assert response.status_code == 200
        latest = response.json()["meters"][0]["latest"]
        assert latest["energy"] == int(history.readings[-1].values.energy)
        assert (
            httpx.post(f"{url}/api/meters", headers={"Authorization": "Bearer t0ken"}).status_code
            == 405
        )
    finally:
        assert stop(process) == 0


def test_serve_from_a_config_file(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "k382.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{db}"\n\n'
        '[http]\nlisten = "127.0.0.1:0"\ntitle = "Our house"\n\n'
        '[[meters]]\nname = "house"\nport = "socket://127.0.0.1:4001"\n'
    )
    process, url = start_serve("--config", str(config))
    try:
        page = httpx.get(f"{url}/")
        assert page.status_code == 200
        assert "Our house" in page.text
        # on loopback without a token, only loopback Host names are served (DNS rebinding)
        assert httpx.get(f"{url}/", headers={"Host": "attacker.example"}).status_code == 400
    finally:
        assert stop(process) == 0


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "192.0.2.1:8382"])
def test_serve_refuses_other_addresses_without_a_token(
    db: Path, address: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("K382_TOKEN", raising=False)
    assert main(["serve", "--storage", f"sqlite:///{db}", "--http", address]) == 1
    err = capsys.readouterr().err
    assert "without a token" in err
    assert "--token" in err


def test_serve_config_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "k382.toml"
    config.write_text('[http]\nport = 80\n\n[[meters]]\nname = "a"\nport = "/dev/ttyUSB0"\n')
    assert main(["serve", "--config", str(config)]) == 1
    assert "http.port" in capsys.readouterr().err


def test_serve_needs_a_storage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) != 0
    assert "--storage" in capsys.readouterr().err


def test_serve_on_a_busy_port_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--storage", f"sqlite:///{db}", "--http", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
