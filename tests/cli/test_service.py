"""``k382 service unit``: units that systemd accepts (``systemd-analyze verify``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.cli.service import unit_text
from kamstrup382.storage.url import open_storage

ANALYZE = shutil.which("systemd-analyze")


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    return subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.parametrize("command", ["collect", "serve"])
def test_the_units_verify(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an executable outside any home directory, as on a Raspberry Pi installed by the guide
    executable = tmp_path / "opt" / "k382"
    executable.parent.mkdir()
    executable.write_text(f'#!/bin/sh\nexec {sys.executable} -m kamstrup382 "$@"\n')
    executable.chmod(0o755)
    assert main(["service", "unit", command, "--exec", str(executable)]) == 0
    text = capsys.readouterr().out
    unit = tmp_path / f"k382-{command}.service"
    unit.write_text(text)
    result = _verify(unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    lines = set(text.splitlines())
    assert {
        "Type=notify",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
    } <= lines
    assert f"ExecStart={executable} {command} --config /etc/k382/k382.toml" in lines
    assert "WatchdogSec=120" in lines
    assert "StateDirectory=k382" in lines
    assert ("SupplementaryGroups=dialout" in lines) == (command == "collect")
    assert ("DeviceAllow=char-ttyUSB rw" in lines) == (command == "collect")
    assert ("ExecReload=/bin/kill -HUP $MAINPID" in lines) == (command == "collect")


def test_a_user_of_its_own_and_no_watchdog() -> None:
    text = unit_text("collect", user="k382", executable="/opt/k382/bin/k382", watchdog=0)
    lines = text.splitlines()
    assert "User=k382" in lines
    assert "DynamicUser=yes" not in lines
    assert not [line for line in lines if line.startswith("WatchdogSec")]
    assert "ProtectHome=yes" in lines


def test_an_install_in_a_home_directory_is_readable() -> None:
    text = unit_text("collect", executable="/home/pi/venv/bin/k382")
    assert "ProtectHome=read-only" in text.splitlines()
    assert "ProtectHome=yes" not in text.splitlines()


def test_a_relative_config_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "unit", "--config", "k382.toml"]) == 2
    assert "--config" in capsys.readouterr().err


def _notifications(sock: socket.socket, until: Callable[[list[str]], bool]) -> list[str]:
    """Datagrams received until ``until`` holds for them (at most 30 s)."""
    received: list[str] = []
    deadline = time.monotonic() + 30
    while not until(received):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            received.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return received


def _told_systemd(
    args: list[str], notify: str, watchdog_usec: int | None, until: Callable[[list[str]], bool]
) -> tuple[list[str], int, str]:
    """Run ``k382 ARGS`` under ``NOTIFY_SOCKET`` until its notifications satisfy ``until``, stop it
    with SIGTERM as systemd does: every notification, the exit status, stderr."""
    env = {**os.environ, "NOTIFY_SOCKET": notify, "PYTHONUNBUFFERED": "1"}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(notify)
        process = subprocess.Popen(
            [sys.executable, "-m", "kamstrup382", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            got = _notifications(sock, until)
            process.send_signal(signal.SIGTERM)
            got += _notifications(sock, lambda seen: any("STOPPING=1" in m for m in seen))
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return got, process.returncode, err


def test_the_collector_tells_systemd(tmp_path: Path) -> None:
    """READY once collecting, STATUS per slot, WATCHDOG from the loop, STOPPING on SIGTERM."""
    url = f"sqlite:///{tmp_path / 'k382.sqlite'}"
    args = ["collect", "--emulator", "1", "--speed", "100", "--interval", "1s", "--storage", url]
    got, status, err = _told_systemd(
        args,
        str(tmp_path / "notify"),
        600_000,
        lambda seen: (
            sum("1 read" in m for m in seen) >= 2 and sum(m == "WATCHDOG=1" for m in seen) >= 3
        ),
    )
    assert status == 0, err
    assert got[0].startswith("READY=1\nSTATUS=collecting 1 meters into sqlite:///"), got
    slots = [m for m in got if m.startswith("STATUS=slot ")]
    assert slots and all(": 1 read, 0 failed, 0 missed in " in m for m in slots), got
    assert got.count("WATCHDOG=1") >= 3
    assert got[-1].startswith("STOPPING=1")


def test_the_dashboard_tells_systemd(tmp_path: Path) -> None:
    db = tmp_path / "k382.sqlite"
    open_storage(f"sqlite:///{db}").close()
    args = ["serve", "--storage", f"sqlite:///{db}", "--http", "127.0.0.1:0"]
    got, status, err = _told_systemd(args, str(tmp_path / "notify"), None, bool)
    assert status == 0, err
    assert got[0].startswith("READY=1\nSTATUS=dashboard on http://127.0.0.1:"), got
    assert "WATCHDOG=1" not in got  # none was asked for
    assert got[-1] == "STOPPING=1"
