"""``k382 emulate`` as a process: it prints where it listens, a raw client reads it, and a
signal stops it with exit status 0."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.cli.emulate import Command, parse_command
from kamstrup382.errors import UsageError
from kamstrup382.protocol import (
    BccAlgorithm,
    BccMode,
    MeterValues,
    decode_reply,
    first_parity_error,
    strip_parity,
)
from tests.fixtures.emulator import RawLine, wait_for

METER_LINE = re.compile(r"^meter (\d+) \(customer (\d{8})\): (\S+)$")


@contextmanager
def emulate(*args: str, stdin: bool = False) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Start ``k382 emulate ARGS``; yield the process and its lines up to ``Ctrl-C stops.``

    ``stdin``: give it a pipe on its standard input (the ``--control`` channel).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kamstrup382", "emulate", *args],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops."):
                break
        else:
            raise AssertionError(f"emulate exited: {proc.wait()} {proc.stderr.read()}")  # type: ignore[union-attr]
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def meters(lines: list[str]) -> list[tuple[str, str]]:
    """(customer number, port) of each ``meter N (...)`` line, in order."""
    found = [m.groups() for line in lines if (m := METER_LINE.match(line))]
    assert [int(n) for n, _, _ in found] == list(range(1, len(found) + 1))
    return [(customer, port) for _, customer, port in found]


def stop(proc: subprocess.Popen[str], signum: int) -> str:
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out


def test_tcp_meters_are_read_and_sigterm_exits_0() -> None:
    with emulate(
        "--tcp", "127.0.0.1:0", "--meters", "2", "--speed", "200", "--delay", "0.02",
        "--load", "constant:1",
    ) as (proc, lines):  # fmt: skip
        found = meters(lines)
        assert [c for c, _ in found] == ["00054042", "00054043"]
        for customer, port in found:
            assert port.startswith("socket://127.0.0.1:")
            with RawLine(port) as line:
                line.send()
                reply = line.read_reply()
            assert first_parity_error(reply) is None  # 8-bit with parity on TCP
            values = decode_reply(strip_parity(reply)).meter_values()
            assert values.customer_number == customer
        assert "8-bit with parity" in lines[0] and "bcc sum7" in lines[0]
        out = stop(proc, signal.SIGTERM)
    assert "stopped after 2 readouts" in out


def test_pty_with_faults_and_sigint_exits_0() -> None:
    with emulate("--pty", "--speed", "200", "--faults", "xor=1", "--seed", "3") as (proc, lines):
        ((customer, path),) = meters(lines)
        assert path.startswith("/dev/pts/") and customer == "00054042"
        assert "7-bit" in lines[0] and "faults xor=1" in lines[0]
        for _ in range(2):  # opened twice at 300 baud 7E1
            with RawLine(path) as line:
                line.send()
                reply = line.read_reply()
            assert all(b < 0x80 for b in reply)
            telegram = decode_reply(reply, bcc=BccMode.AUTO)
            assert telegram.bcc_algorithm is BccAlgorithm.XOR
        out = stop(proc, signal.SIGINT)
    assert "stopped after 2 readouts" in out


def test_many_meters_are_printed_as_a_range() -> None:
    with emulate("--meters", "12", "--speed", "200", "--delay", "0.02-0.05") as (proc, lines):
        assert meters(lines) == []
        (summary,) = [line for line in lines if line.startswith("meters 1-12:")]
        first, last = re.findall(r"socket://127\.0\.0\.1:(\d+)-(\d+)", summary)[0]
        assert int(last) - int(first) == 11
        with RawLine(f"socket://127.0.0.1:{last}") as line:
            line.send()
            assert decode_reply(strip_parity(line.read_reply())).meter_values().customer_number == (
                "00054053"
            )
        stop(proc, signal.SIGTERM)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delay", "0.9"], "answer window"),
        (["--delay", "soon"], "--delay"),
        (["--tcp", "localhost:http"], "--tcp"),
        (["--faults", "flip=2"], "faults.flip"),
        (["--faults", "smoke=0.1"], "faults.smoke"),
        (["--load", "csv:/nonexistent/load.csv"], "load"),
        (["--tariff-schedule", "22-06"], "tariff_schedule"),
        (["--type-number", "685-999"], "type_number"),
        (["--customer-number", "12x"], "customer_number"),
        (["--pulse-out", "/nonexistent/dir/pulses.jsonl"], "--pulse-out"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulate", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--load", "1e309"], "more than 1e15 kW"),
        (["--load", "constant:kw=1e20"], "more than 1e15 kW"),
        (["--load", "inf"], "not a power"),
        (["--load", "nan"], "not a power"),
        (["--load", "-1"], "negative"),
        (["--load", "80"], "more than a 3-phase meter measures (3 x 253 V x 105 A = 79.695 kW)"),
        (["--load", "household:scale=1e309"], "more than 1e15 kW"),
        (["--load", "household:scale=nan"], "not a power"),
        (["--load", "household:scale=40"], "draws up to 101.2 kW"),
        (["--load", "27", "--type-number", "685-182-OK-15"], "1-phase meter"),
        (["--speed", "1e309"], "--speed"),
        (["--speed", "nan"], "--speed"),
        (["--speed", "1e-300"], "--speed"),
        (["--delay", "nan"], "--delay"),
        (["--delay", "0-inf"], "--delay"),
    ],
)
def test_loads_and_numbers_beyond_a_real_meter_exit_2_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulate", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert message in err, err
    assert "--load" in err or "--load" not in args


def test_the_heaviest_load_a_meter_measures_is_served() -> None:
    """79.695 kW on three phases: just within, so it is served (the bound is not too tight)."""
    with emulate("--load", "79.695") as (proc, lines):
        assert meters(lines)
        stop(proc, signal.SIGTERM)


def test_a_port_in_use_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["emulate", "--tcp", f"127.0.0.1:{port}"]) == 2
    assert f"port {port}" in capsys.readouterr().err


def test_type_and_customer_number_and_tariff_schedule_options() -> None:
    with emulate(
        "--pty", "--meters", "2", "--speed", "200", "--type-number", "685-191-SK-02",
        "--customer-number", "00000099", "--tariff-schedule", "00:00-24:00",
        "--load", "constant:3",
    ) as (proc, lines):  # fmt: skip
        found = meters(lines)
        assert [c for c, _ in found] == ["00000099", "00000100"]
        with RawLine(found[1][1]) as line:
            line.send()
            telegram = decode_reply(line.read_reply())
        stop(proc, signal.SIGTERM)
    assert str(telegram.identification) == "/KAM 685-191-SK-02"
    assert telegram.meter_values().customer_number == "00000100"


def command(proc: subprocess.Popen[str], line: str) -> str:
    """Send one control line; return the emulator's one-line answer on standard error."""
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stderr.readline().rstrip("\n")


def read_values(port: str) -> MeterValues:
    with RawLine(port) as line:
        line.send()
        reply = line.read_reply()
    return decode_reply(strip_parity(reply)).meter_values()


def test_pulse_out_lines_and_tariff_control() -> None:
    # 72 kW at 50 imp/kWh: a pulse every second exactly (a real meter measures at most
    # 3 x 253 V x 105 A = 79.695 kW: a heavier load is refused)
    with emulate(
        "--load", "constant:72", "--pulse-constant", "50", "--pulse-out", "-", "--control",
        "--speed", "200", "--delay", "0.02", stdin=True,
    ) as (proc, lines):  # fmt: skip
        ((_, port),) = meters(lines)
        assert proc.stdout is not None
        events = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [e["meter"] for e in events] == [1, 1]
        assert events[1]["total"] == events[0]["total"] + events[1]["count"]
        assert events[0]["total"] == events[0]["count"] >= 1  # from the first pulse on
        first, second = (datetime.fromisoformat(e["at"]) for e in events)
        assert events[0]["at"].endswith("Z")
        assert second - first == timedelta(seconds=events[1]["count"])  # 1 s a pulse exactly

        # pins 1-4 shorted: the meter counts on tariff 2 (the split itself, kWh by kWh, is
        # tests/emulator/test_model.py's; at 72 kW a kWh takes 50 s)
        assert command(proc, "tariff 2") == (
            "k382 emulate: ok: every meter: tariff 2 (pins 1-4 shorted)"
        )
        before = read_values(port)
        now = read_values(port)
        assert now.tariff_1 == before.tariff_1
        assert now.energy >= before.energy
        assert now.energy - (now.tariff_1 + now.tariff_2) in (0, 1)  # what a 382 guarantees

        assert command(proc, "1 tariff 1") == "k382 emulate: ok: meter 1: tariff 1 (pins 1-4 open)"
        assert command(proc, "2 tariff 1") == (
            "k382 emulate: error: '2 tariff 1': no meter 2 (meters 1-1)"
        )
        assert command(proc, "tariff 3") == (
            "k382 emulate: error: a 685-382 has tariffs 1 and 2 only (pin 4), got 3"
        )
        assert command(proc, "tariff 5") == (
            "k382 emulate: error: 'tariff 5': tariff must be 1 (pins 1-4 open) or 2 (shorted); "
            "3 or 4 on a 382C"
        )
        assert command(proc, "pulse 5") == (
            "k382 emulate: error: pulse: pin 4 switches the tariff here (start with --pulse-input)"
        )
        assert command(proc, "switch on").startswith("k382 emulate: error: 'switch on': expected")
        stop(proc, signal.SIGTERM)


def test_pulse_input_counts_into_1_26() -> None:
    with emulate(
        "--pty", "--meters", "2", "--pulse-input", "--control", "--speed", "200",
        "--delay", "0.02", "--load", "constant:1", stdin=True,
    ) as (proc, lines):  # fmt: skip
        (_, first), (_, second) = meters(lines)
        assert read_values(first).pulse_input == 0
        assert command(proc, "pulse 5") == (
            "k382 emulate: ok: every meter: 5 pulses into pin 4 (1.26)"
        )
        assert read_values(first).pulse_input == 5
        assert command(proc, "2 pulse 3") == "k382 emulate: ok: meter 2: 3 pulses into pin 4 (1.26)"
        assert (read_values(first).pulse_input, read_values(second).pulse_input) == (
            Decimal(5),
            Decimal(8),
        )
        assert command(proc, "tariff 2") == (
            "k382 emulate: error: tariff: pin 4 counts pulses here (--pulse-input)"
        )
        stop(proc, signal.SIGTERM)


def test_pulse_input_and_a_tariff_schedule_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["emulate", "--pulse-input", "--tariff-schedule", "22:00-06:00"]) == 2
    assert "pulse input mode" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("tariff 2", Command(None, "tariff", 2)),
        ("  3   tariff 1 ", Command(3, "tariff", 1)),
        ("pulse 0", Command(None, "pulse", 0)),
        ("4 pulse 12", Command(4, "pulse", 12)),
    ],
)
def test_control_lines_parse(line: str, expected: Command) -> None:
    assert parse_command(line, 4) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("5 tariff 1", "no meter 5"),
        ("0 tariff 1", "no meter 0"),
        ("tariff", "expected"),
        ("tariff 0", "tariff must be 1"),
        ("pulse -1", "pulse count"),
        ("pulse many", "pulse count"),
        ("pulse 1 2", "expected"),
        ("reset", "expected"),
    ],
)
def test_bad_control_lines_say_why(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_command(line, 4)


def test_a_load_no_meter_can_draw_is_refused_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kamstrup382", "emulate", "--load", "constant:3600"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "k382 emulate: --load 'constant:3600': draws up to 3600 kW, more than a 3-phase meter "
        "measures (3 x 253 V x 105 A = 79.695 kW)\n"
    )


def test_pulse_out_to_a_file_for_every_meter(tmp_path: Path) -> None:
    out = tmp_path / "pulses.jsonl"
    with emulate(
        "--meters", "2", "--load", "constant:72", "--pulse-constant", "100",
        "--pulse-out", str(out),
    ) as (proc, _):  # fmt: skip
        wait_for(lambda: out.read_text().count("\n") >= 6)
        stop(proc, signal.SIGTERM)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    for meter in (1, 2):
        mine = [e for e in events if e["meter"] == meter]
        assert len(mine) >= 2
        totals = list(itertools.accumulate(e["count"] for e in mine))
        assert [e["total"] for e in mine] == totals
        # 72 kW at 100 imp/kWh: a pulse every half second exactly
        for a, b in itertools.pairwise(mine):
            elapsed = datetime.fromisoformat(b["at"]) - datetime.fromisoformat(a["at"])
            assert elapsed == timedelta(milliseconds=500) * b["count"]


#: Runs ``k382 emulate ARGS`` under an open-file limit of LIMIT (soft and hard) that the
#: process cannot raise: as root it gives up CAP_SYS_RESOURCE first.
LIMITED_EMULATE = """
import ctypes, os, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
if os.geteuid() == 0:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~(1 << 24)  # CAP_SYS_RESOURCE
    data[0].permitted &= ~(1 << 24)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit + 1, limit + 1))
    except ValueError:
        pass
    else:
        raise AssertionError("the limit can still be raised")
from kamstrup382.cli import main
sys.exit(main(["emulate", *sys.argv[2:]]))
"""


def limited_emulate(limit: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LIMITED_EMULATE, str(limit), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


@pytest.mark.parametrize(
    ("args", "need"),
    [(("--meters", "200"), "264"), (("--pty", "--meters", "60"), "244")],
    ids=["tcp", "pty"],
)
def test_more_meters_than_the_open_file_limit_serves_exit_2_at_once(
    args: tuple[str, ...], need: str
) -> None:
    proc = limited_emulate(200, "--speed", "200", *args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert out == ""  # refused before any meter was announced
    (line,) = err.splitlines()
    meters, transport = args[-1], "pty" if "--pty" in args else "tcp"
    assert line == (
        f"k382 emulate: {meters} {transport} meters need {need} open files, the limit is 200 "
        "and cannot be raised (ulimit -n)"
    )


def test_as_many_meters_as_the_open_file_limit_serves_start() -> None:
    proc = limited_emulate(200, "--meters", "136", "--speed", "200")  # 136 + 64 = 200
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(3)]
        assert lines[1].startswith("meters 1-136: socket://127.0.0.1:") and lines[2] == (
            "Ctrl-C stops."
        )
        ports = lines[1].split(": ", 1)[1]
        first = int(ports.split("-")[0].rsplit(":", 1)[1])
        with RawLine(f"socket://127.0.0.1:{first + 135}") as line:
            line.send()
            assert decode_reply(strip_parity(line.read_reply())).meter_values()
        assert stop(proc, signal.SIGTERM).endswith("stopped after 1 readouts\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_log_writes_the_ground_truth_of_each_request(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    log.write_text("left from an earlier run\n")
    with emulate(
        "--meters", "2", "--speed", "200", "--delay", "0.02", "--faults", "swap=1",
        "--load", "constant:1", "--log", str(log),
    ) as (proc, lines):  # fmt: skip
        received = []
        for _, port in meters(lines):
            with RawLine(port) as line:
                line.send()
                received.append(line.read_reply())
        stop(proc, signal.SIGTERM)
    records = [json.loads(text) for text in log.read_text().splitlines()]
    assert [(r["meter"], r["number"]) for r in records] == [(1, 1), (2, 1)]
    for record, got in zip(records, received, strict=True):
        assert bytes.fromhex(record["wire"]) == got and record["complete"] is True
        assert [f["kind"] for f in record["faults"]] == ["swap"]
        sent = decode_reply(strip_parity(got), bcc=BccMode.AUTO)  # the block check passes
        clean = decode_reply(record["clean"].encode("ascii"))
        truth = {k: str(v) for k, v in clean.meter_values().as_dict().items()}
        assert record["values"] == truth
        assert {k: str(v) for k, v in sent.meter_values().as_dict().items()} != truth


def test_log_to_a_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--log", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"k382 emulate: --log '{tmp_path}': ")


def test_control_listen_takes_the_control_commands_over_tcp() -> None:
    with emulate(
        "--load", "constant:10", "--speed", "200", "--delay", "0.02",
        "--control-listen", "127.0.0.1:0",
    ) as (proc, lines):  # fmt: skip
        (control,) = [
            line.removeprefix("control: ") for line in lines if line.startswith("control")
        ]
        host, port = control.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            reader = sock.makefile("rwb")
            replies = []
            for line in (b"tariff 2\n", b"2 tariff 1\n", b"tariff 1\n"):
                reader.write(line)
                reader.flush()
                replies.append(reader.readline().decode().strip())
        assert replies == [
            "ok: every meter: tariff 2 (pins 1-4 shorted)",
            "error: '2 tariff 1': no meter 2 (meters 1-1)",
            "ok: every meter: tariff 1 (pins 1-4 open)",
        ]
        stop(proc, signal.SIGTERM)
