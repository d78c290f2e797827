"""``k382 read``: table, --json, --csv, --watch, line and BCC modes, errors and exit codes,
the progress bar on a terminal only; against the emulator over TCP and a pty."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from kamstrup382.cli import main
from kamstrup382.emulator import EmulatorThread
from kamstrup382.protocol import BccMode, decode_reply
from kamstrup382.render import CSV_FIELDS, dumps, telegram_json

SPEED = 50.0


@pytest.fixture(scope="module", params=["tcp", "pty"])
def emu(request: pytest.FixtureRequest) -> Iterator[EmulatorThread]:
    with EmulatorThread(transport=request.param, speed=SPEED) as emulator:
        yield emulator


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["read", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table(emu: EmulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, emu.ports[0])
    assert code == 0, err
    assert err == ""
    values = emu.sent_values(0)[-1]
    assert f"port            {emu.ports[0]}" in out
    assert "/KAM 685-382-OK-15" in out
    for name, value in values.as_dict().items():
        line = next(x for x in out.splitlines() if f" {name} " in x)
        assert line.split()[2] == (value if isinstance(value, str) else format(value, "f"))


def test_json_is_the_decode_shape_plus_timing(
    emu: EmulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, emu.ports[0], "--json")
    assert code == 0
    data = json.loads(out, parse_float=Decimal)
    # exactly what `k382 decode --json` prints for the reply the meter sent, plus four keys
    sent = emu.sent(0)[-1]
    decoded = json.loads(
        dumps(telegram_json(decode_reply(sent, bcc=BccMode.AUTO))), parse_float=Decimal
    )
    assert {k: v for k, v in data.items() if k in decoded} == decoded
    assert set(data) == set(decoded) | {"port", "line", "timing", "attempts"}
    registers = {r["name"]: r["value"] for r in data["registers"]}
    assert registers == emu.sent_values(0)[-1].as_dict()
    assert data["port"] == emu.ports[0]
    assert data["line"] in ("7E1", "8N1")
    assert data["attempts"] == 1
    timing = data["timing"]
    assert set(timing) == {
        "requested_at",
        "first_byte_at",
        "done_at",
        "answer_delay_s",
        "duration_s",
    }
    assert 0 < timing["answer_delay_s"] <= timing["duration_s"]


def test_csv_watch(emu: EmulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(emu.sent_values(0))
    code, out, _ = run(capsys, emu.ports[0], "--csv", "--watch", "0.01", "--count", "3")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == CSV_FIELDS
    assert len(rows) == 3
    sent = emu.sent_values(0)[before:]
    assert [row["energy"] for row in rows] == [format(v.energy, "f") for v in sent]
    assert [row["customer_number"] for row in rows] == [v.customer_number for v in sent]
    assert {row["port"] for row in rows} == {emu.ports[0]}


def test_json_watch_is_one_object_per_line(
    emu: EmulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, emu.ports[0], "--json", "--watch", "0.01", "--count", "2")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(json.loads(line)["registers"] for line in lines)


def test_wrong_line_mode_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorThread(transport="tcp", speed=SPEED) as emu:  # 8-bit with parity
        code, out, err = run(capsys, emu.ports[0], "--line", "7E1", "--retries", "0")
        assert code == 1
        assert out == ""
        assert err.count("\n") == 1
        assert err.startswith("error: framing: ")
        assert "8-bit" in err
        code, out, err = run(capsys, emu.ports[0], "--line", "8n1")
        assert code == 0, err


def test_xor_meter(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorThread(transport="pty", speed=SPEED, bcc="xor") as emu:
        code, out, _ = run(capsys, emu.ports[0], "--json")
        assert code == 0
        assert json.loads(out)["bcc"]["algorithm"] == "xor"
        code, out, err = run(capsys, emu.ports[0], "--bcc", "sum7")
        assert code == 1
        assert err.startswith("error: bcc: ")
        assert out == ""
        assert len(emu.log(0)) == 2  # not retried: the meter uses the other algorithm


def test_timeout_names_its_phase(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorThread(transport="tcp", speed=SPEED, faults="silent=1") as emu:
        code, out, err = run(capsys, emu.ports[0], "--retries", "1", "--timeout", "0")
        assert code == 1
        assert out == ""
        assert err.startswith("error: timeout: no answer within")
        assert "phase answer" in err
        assert len(emu.log(0)) == 2


def test_watch_goes_on_after_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorThread(transport="tcp", speed=SPEED, faults="silent=1") as emu:
        code, _, err = run(
            capsys, emu.ports[0], "--watch", "0.01", "--count", "2", "--retries", "0"
        )
        assert code == 1
        assert err.count("error: timeout:") == 2
        assert len(emu.log(0)) == 2


def test_unreachable_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = run(capsys, f"socket://127.0.0.1:{port}", "--retries", "0")
    assert code == 1
    assert out == ""
    assert err.startswith("error: connection: cannot connect")


@pytest.mark.parametrize(
    "args",
    [
        ["socket://127.0.0.1:1", "--json", "--csv"],
        ["socket://127.0.0.1:1", "--line", "9N1"],
        ["socket://127.0.0.1:1", "--bcc", "crc"],
        ["socket://127.0.0.1:1", "--count", "2"],
        ["socket://127.0.0.1:1", "--watch", "0"],
        ["socket://127.0.0.1:1", "--retries", "-1"],
        ["socket://nohost"],
        [],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2
    assert out == ""
    assert err


def read_in_subprocess(port: str, stderr: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kamstrup382.cli", "read", port, "--csv"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=60,
        check=False,
    )


def test_progress_bar_only_on_a_terminal() -> None:
    with EmulatorThread(transport="tcp", speed=SPEED) as emu:
        master, slave = os.openpty()
        try:
            done = read_in_subprocess(emu.ports[0], slave)
            os.close(slave)
            shown = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                shown += chunk
        finally:
            os.close(master)
        assert done.returncode == 0
        assert b"reading [" in shown
        assert f"{len(emu.sent(0)[0])}/".encode() in shown
        assert len(done.stdout.splitlines()) == 2  # the bar never goes to stdout

        piped = read_in_subprocess(emu.ports[0], subprocess.PIPE)
        assert piped.returncode == 0
        assert piped.stderr == b""
