"""``k382 service unit``: units that systemd accepts (``systemd-analyze verify``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.cli.service import unit_text

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
