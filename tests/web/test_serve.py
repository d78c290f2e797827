"""``k382 serve`` as a user runs it: a real server process over a SQLite file, stopped by Ctrl-C."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from kamstrup382.cli import main
from tests.web.history import History
from tests.web.serve_process import start_serve, stop


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
        assert latest["registers"]["energy"]["value"] == int(history.readings[-1].values.energy)
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
    monkeypatch.delenv("K382_HTTP_TOKEN", raising=False)
    assert main(["serve", "--storage", f"sqlite:///{db}", "--http", address]) == 2  # a usage error
    err = capsys.readouterr().err
    assert "without a token" in err
    assert "--token" in err


def test_serve_config_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "k382.toml"
    config.write_text('[http]\nport = 80\n\n[[meters]]\nname = "a"\nport = "/dev/ttyUSB0"\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert "http.port" in capsys.readouterr().err


def test_serve_needs_a_storage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) != 0
    assert "--storage" in capsys.readouterr().err


def test_serve_on_a_busy_port_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--storage", f"sqlite:///{db}", "--http", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("address", ["127.0.0.2:0", "[::1]:0", "localhost:0"])
def test_the_printed_address_answers(db: Path, address: str) -> None:
    process, url = start_serve("--storage", f"sqlite:///{db}", "--http", address)
    try:
        response = httpx.get(f"{url}/api/meters", timeout=10)
        assert response.status_code == 200, response.text
        assert httpx.get(f"{url}/", timeout=10).status_code == 200
        # still no foreign names (DNS rebinding)
        rebound = httpx.get(f"{url}/api/meters", headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 400
        assert "house" not in rebound.text
    finally:
        assert stop(process) == 0


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_token_from_the_environment_is_not_in_ps(db: Path) -> None:
    secret = "env-s3cret-4711"
    process, url = start_serve(
        "--storage", f"sqlite:///{db}", "--http", "0.0.0.0:0", env={"K382_HTTP_TOKEN": secret}
    )
    try:
        assert secret not in command_line(process.pid)
        url = url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(f"{url}/api/meters").status_code == 401
        bearer = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{url}/api/meters", headers=bearer).status_code == 200
    finally:
        assert stop(process) == 0


def test_the_token_from_a_file_and_a_warning_when_others_may_read_it(
    db: Path, tmp_path: Path
) -> None:
    secret = "file-s3cret-0815"
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    token_file.chmod(0o644)
    before: list[str] = []
    process, url = start_serve(
        "--storage", f"sqlite:///{db}", "--token-file", str(token_file), before=before
    )
    try:
        assert secret not in command_line(process.pid)
        assert any("warning:" in line and "chmod 600" in line for line in before), before
        assert secret not in "".join(before)
        assert httpx.get(f"{url}/api/meters").status_code == 401
        bearer = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{url}/api/meters", headers=bearer).status_code == 200
    finally:
        assert stop(process) == 0


def test_the_token_file_of_the_config_is_relative_to_it(db: Path, tmp_path: Path) -> None:
    secret = "config-s3cret-42"
    (tmp_path / "http-token").write_text(secret)
    (tmp_path / "http-token").chmod(0o600)
    config = tmp_path / "k382.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{db}"\n\n'
        '[http]\nlisten = "127.0.0.1:0"\ntoken_file = "http-token"\n\n'
        '[[meters]]\nname = "house"\nport = "socket://127.0.0.1:4001"\n'
    )
    before: list[str] = []
    process, url = start_serve("--config", str(config), before=before)
    try:
        assert before == []  # mode 600: no warning
        assert httpx.get(f"{url}/api/meters").status_code == 401
        bearer = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{url}/api/meters", headers=bearer).status_code == 200
    finally:
        assert stop(process) == 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), (b"", "is empty"), (b"\xff\xfe", "not UTF-8"), (b"a b", "one line")],
)
def test_a_bad_token_file_is_an_error_naming_it(
    db: Path,
    tmp_path: Path,
    content: bytes | None,
    problem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_bytes(content)
    args = ["serve", "--storage", f"sqlite:///{db}", "--token-file", str(token_file)]
    assert main(args) == 2  # a usage error
    err = capsys.readouterr().err
    assert "--token-file" in err
    assert problem in err
    assert "Traceback" not in err


def test_token_and_token_file_together_are_refused(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x")
    args = [
        "serve",
        "--storage",
        f"sqlite:///{db}",
        "--token",
        "y",
        "--token-file",
        str(token_file),
    ]
    assert main(args) != 0
    assert "not both" in capsys.readouterr().err
