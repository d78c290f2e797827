"""``k382 pulses``: live power from the emulator's pulse-out, one line an event."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from kamstrup382.cli import main


def test_live_power_from_an_emulated_meter() -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kamstrup382",
            "emulate",
            "--tcp",
            "127.0.0.1:0",
            "--load",
            "constant:36",
            "--pulse-listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as emulator:
        assert emulator.stdout is not None
        source = None
        for _ in range(6):
            if match := re.search(r"pulses: (tcp://\S+)", emulator.stdout.readline()):
                source = match[1]
                break
        assert source is not None
        shown = subprocess.run(
            [sys.executable, "-m", "kamstrup382", "pulses", source, "--events", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        emulator.terminate()
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 5
    assert "waiting for a second pulse" in lines[0]
    for line in lines[1:]:
        watts = float(line.split()[0])
        assert watts == pytest.approx(36_000, rel=0.01), line
    assert lines[-1].endswith("pulses 5  rejected 0")


def test_a_bad_source_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pulses", "udp://127.0.0.1:1"]) == 2
    assert "expected tcp://HOST:PORT or gpio:CHIP:LINE" in capsys.readouterr().err
