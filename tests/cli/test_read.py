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
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonschema
import pytest

from kamstrup382.cli import main
from kamstrup382.clock import ManualClock
from kamstrup382.documents import reading_schema
from kamstrup382.emulator import ConstantLoad, EmulatorThread, Faults, MeterSettings
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
    for name, value in values.present().items():
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
    bcc = data.pop("bcc")
    # the BCC object says more: what both algorithms computed, which matched, how sure
    assert {k: v for k, v in bcc.items() if k in decoded["bcc"]} == decoded.pop("bcc")
    assert set(bcc) == {"algorithm", "value", "valid", "computed", "matched", "certainty", "note"}
    assert {k: v for k, v in data.items() if k in decoded} == decoded
    # the one shape of a reading (docs/formats.md), validated against its schema
    assert set(data) == set(decoded) | {"meter", "read_at", "port", "line", "timing"}
    jsonschema.validate(json.loads(out), reading_schema())
    registers = {name: r["value"] for name, r in data["registers"].items()}
    assert registers == emu.sent_values(0)[-1].present()
    assert data["port"] == emu.ports[0]
    assert data["line"] in ("7E1", "8N1")
    assert data["meter"] is None
    timing = data["timing"]
    assert timing["attempts"] == 1
    assert set(timing) == {
        "requested_at",
        "first_byte_at",
        "done_at",
        "answer_delay_s",
        "duration_s",
        "attempts",
    }
    assert data["read_at"] == timing["requested_at"]
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


def test_auto_says_which_algorithm_matched_and_how_sure(
    emu: EmulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, emu.ports[0])
    assert code == 0, err
    bcc_line = next(line for line in out.splitlines() if line.startswith("bcc "))
    assert bcc_line.endswith(
        "valid; only the 7-bit sum matched (xor would be 0x12): the Kamstrup 382's own algorithm"
    )
    code, out, _ = run(capsys, emu.ports[0], "--json")
    bcc = json.loads(out)["bcc"]
    assert bcc["certainty"] == "own"
    assert bcc["matched"] == ["sum7"]
    assert bcc["computed"] == {"sum7": "0x3e", "xor": "0x12"}
    code, out, _ = run(capsys, emu.ports[0], "--json", "--bcc", "sum7")
    bcc = json.loads(out)["bcc"]
    assert (bcc["certainty"], bcc["computed"]) == ("fixed", {"sum7": "0x3e"})


def test_an_xor_meter_is_unconfirmed_until_a_second_readout_agrees(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with EmulatorThread(transport="tcp", speed=SPEED, bcc="xor") as emu:
        code, out, _ = run(capsys, emu.ports[0])
        assert code == 0
        assert "only the XOR matched (sum7 would be 0x3e): a standard IEC 62056-21 meter" in out
        assert "unconfirmed until a second readout agrees (--watch)" in out
        code, out, _ = run(capsys, emu.ports[0], "--json", "--watch", "0.01", "--count", "2")
        assert code == 0
        first, second = (json.loads(line)["bcc"] for line in out.splitlines())
        assert (first["certainty"], second["certainty"]) == ("unconfirmed", "confirmed")
        assert second["note"].endswith("confirmed, earlier readouts of this meter agree")


def test_a_block_both_algorithms_match_is_undecided(capsys: pytest.CaptureFixture[str]) -> None:
    # over this block the 7-bit sum and the XOR are the same character
    both = MeterSettings(hour_counter_h=9_822_997, pulse_input=9_959_984)
    clock = ManualClock(datetime(2026, 3, 1, 12, tzinfo=UTC))
    with EmulatorThread(
        transport="tcp", speed=SPEED, settings=both, load=ConstantLoad(0), clock=clock
    ) as emu:
        code, out, _ = run(capsys, emu.ports[0], "--json")
        assert code == 0
        bcc = json.loads(out)["bcc"]
        assert bcc["certainty"] == "undecided"
        assert bcc["matched"] == ["sum7", "xor"]
        assert "undecided" in bcc["note"]


def test_damage_the_bcc_cannot_see_is_retried(capsys: pytest.CaptureFixture[str]) -> None:
    faults = Faults(script=(("shift",), ()))
    with EmulatorThread(transport="tcp", speed=SPEED, faults=faults) as emu:
        code, out, err = run(capsys, emu.ports[0], "--json")
        assert code == 0, err
        data = json.loads(out, parse_float=Decimal)
        assert data["timing"]["attempts"] == 2
        registers = {name: r["value"] for name, r in data["registers"].items()}
        assert registers == emu.sent_values(0)[-1].present()
    with EmulatorThread(transport="tcp", speed=SPEED, faults="shift=1") as emu:
        code, out, err = run(capsys, emu.ports[0], "--retries", "1")
        assert (code, out) == (1, "")
        assert err.startswith("error: implausible: ")
        assert "as the meter prints it" in err


def test_watch_holds_each_reading_to_the_last(capsys: pytest.CaptureFixture[str]) -> None:
    """Two digits swapped in every reply after the first: in the customer number or the hour
    counter only the history can see it; every readout after the first fails, none prints a
    value the meter did not have."""
    faults = Faults(script=((),), swap=1.0)
    with EmulatorThread(transport="tcp", speed=SPEED, faults=faults, seed=3) as emu:
        code, out, err = run(
            capsys, emu.ports[0], "--csv", "--watch", "0.01", "--count", "12", "--retries", "0"
        )
        swapped = [fault.offset for exchange in emu.log(0)[1:] for fault in exchange.faults]
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1  # the first, clean reply
    assert err.count("error: implausible: ") == 11
    assert "customer number" in err or "hour counter" in err  # what only the history sees
    assert len(swapped) == 11


def test_max_reply_bounds_the_reply(capsys: pytest.CaptureFixture[str]) -> None:
    # one character sent twice: 168 bytes
    with EmulatorThread(transport="tcp", speed=SPEED, faults="double=1") as emu:
        code, out, err = run(capsys, emu.ports[0], "--max-reply", "167", "--retries", "0")
        assert (code, out) == (1, "")
        assert err.startswith("error: framing: reply longer than 167 bytes")
    with EmulatorThread(transport="tcp", speed=SPEED) as emu:
        code, out, err = run(capsys, emu.ports[0], "--max-reply", "167")
        assert code == 0, err


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
        ["socket://127.0.0.1:1", "--max-reply", "166"],
        ["socket://127.0.0.1:1", "--max-reply", "65537"],
        ["socket://127.0.0.1:1", "--max-reply", "2k"],
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


def test_a_382c_is_read_with_its_registers_named(capsys: pytest.CaptureFixture[str]) -> None:
    settings = MeterSettings(model="382c", customer_number="14410000")
    with EmulatorThread(transport="tcp", speed=SPEED, settings=settings) as emu:
        code, out, err = run(capsys, emu.ports[0], "--json")
        sent = emu.sent_values(0)[-1]
        assert code == 0, err
        data = json.loads(out, parse_float=Decimal)
        assert data["dialect"] == "kamstrup-382c"
        assert data["identification"]["text"] == "68438BC450000"
        named = [(r["code"], name) for name, r in data["registers"].items()]
        assert named == [
            ("0.0.0", "customer_number"), ("1.8.0", "energy"), ("1.8.1", "tariff_1"),
            ("1.8.2", "tariff_2"), ("1.8.3", "tariff_3"), ("1.8.4", "tariff_4"),
            ("96.8.0", "hour_counter"), ("0.128.1", "pulse_input"), ("1.6.0", "actual_peak"),
        ]  # fmt: skip
        assert {name: r["value"] for name, r in data["registers"].items()} == sent.present()
        code, out, err = run(capsys, emu.ports[0], "--csv")
        assert code == 0, err
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rows[0]["tariff_4"] == str(sent.tariff_4)
        assert rows[0]["last_month_peak"] == ""  # the 382C has none
