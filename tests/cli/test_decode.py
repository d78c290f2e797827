"""``k382 decode``: table, --json, hex and raw input, stdin, the built-in example, exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from kamstrup382.cli import cli, main
from kamstrup382.cli.decode import MAX_HEX_TEXT
from kamstrup382.protocol import BccAlgorithm, add_parity, compute_bcc
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY as MAX_REPLY

DATA = Path(__file__).resolve().parent.parent / "data"
SPEC = (DATA / "spec-example.bin").read_bytes()
SPEC_HEX = (DATA / "spec-example.hex").read_text()


def run(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["decode", *args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_no_input_decodes_the_built_in_spec_example() -> None:
    code, out, err = run([])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("identification  /KAM 685-382-OK-15")
    assert "3 phases, current code 8, class 2, module OK, label 15" in lines[0]
    assert lines[1].split() == ["bcc", "sum7", "0x3e", "valid"]
    rows = [line.split() for line in lines[3:]]
    assert rows == [
        ["code", "name", "value", "unit"],
        ["0.0", "customer_number", "00054042"],
        ["1.20", "energy", "53", "kWh"],
        ["1.20.1", "tariff_1", "33", "kWh"],
        ["1.20.2", "tariff_2", "20", "kWh"],
        ["1.31", "hour_counter", "482", "h"],
        ["1.26", "pulse_input", "0"],
        ["1.6", "actual_peak", "18.3", "kW"],
        ["1.6*1", "last_month_peak", "0.0", "kW"],
    ]


def test_json_shape(tmp_path: Path) -> None:
    capture = tmp_path / "reply.bin"
    capture.write_bytes(SPEC)
    code, out, err = run(["--json", str(capture)])
    assert code == 0 and err == ""
    data = json.loads(out, parse_float=Decimal)
    assert set(data) >= {"identification", "registers", "bcc"}
    ident = data["identification"]
    assert (ident["manufacturer"], ident["text"]) == ("KAM", "685-382-OK-15")
    assert {k: ident["type_number"][k] for k in ("phases", "current_code", "accuracy_class")} == {
        "phases": 3,
        "current_code": 8,
        "accuracy_class": 2,
    }
    assert (ident["type_number"]["module"], ident["type_number"]["label"]) == ("OK", "15")
    registers = data["registers"]  # keyed by name, in the order sent
    assert registers["customer_number"] == {"code": "0.0", "value": "00054042", "unit": None}
    assert [r["value"] for r in list(registers.values())[1:]] == [
        53, 33, 20, 482, 0, Decimal("18.3"), Decimal("0.0")
    ]  # fmt: skip
    assert '"value": 18.3' in out and '"value": 0.0' in out  # numbers, with the meter's digits
    assert registers["last_month_peak"]["unit"] == "kW" and registers["pulse_input"]["unit"] is None
    assert data["bcc"]["algorithm"] == "sum7" and data["bcc"]["valid"] is True


def test_hex_input_with_whitespace_from_stdin() -> None:
    spaced = " ".join(SPEC_HEX[i : i + 8] for i in range(0, len(SPEC_HEX), 8)).upper() + "\n"
    code, out, _ = run(["-", "--json"], stdin=spaced.encode())
    assert code == 0
    assert json.loads(out)["registers"]["actual_peak"]["value"] == 18.3


def test_raw_bytes_from_stdin_and_eight_bit(tmp_path: Path) -> None:
    assert run(["-"], stdin=SPEC)[0] == 0
    eight = tmp_path / "eight.bin"
    eight.write_bytes(add_parity(SPEC))
    code, out, _ = run(["--eight-bit", str(eight)])
    assert code == 0 and "18.3" in out
    code, out, err = run([str(eight)])
    assert code == 2 and out == ""
    assert err.startswith("error: framing: byte 0x") and "bit 7 set" in err


def test_bcc_option() -> None:
    block = SPEC[SPEC.index(b"\x02") + 1 : -1]
    xor_reply = SPEC[:-1] + bytes((compute_bcc(block, BccAlgorithm.XOR),))
    for args in (["--bcc", "xor"], ["--bcc", "auto"], []):
        code, out, _ = run([*args, "--json", "-"], stdin=xor_reply)
        assert code == 0 and json.loads(out)["bcc"] == {
            "algorithm": "xor",
            "value": "0x12",
            "valid": True,
        }
    code, out, err = run(["--bcc", "sum7", "-"], stdin=xor_reply)
    assert (code, out) == (2, "")
    assert err == (
        "error: bcc: BCC mismatch (sum7): received 0x12, expected sum7 0x3e: the IEC XOR "
        "matched, as a standard IEC meter's does (use bcc xor or auto) (at byte 166)\n"
    )
    # and the other way round: the meter's own reply read as a standard IEC one
    code, out, err = run(["--bcc", "xor", "-"], stdin=SPEC)
    assert (code, out) == (2, "")
    assert "the 7-bit sum matched, as a Kamstrup 382's does (use bcc sum7 or auto)" in err


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (SPEC[:-1] + b"?", "error: bcc: BCC mismatch"),
        (SPEC[:100], "error: framing: reply incomplete: data block not ended by ETX"),
        (SPEC.replace(b"685-382", b"685-482"), "error: type_number: bad type number"),
        (b"abc", "error: usage: hex input has an odd number of digits"),
        (b"", "error: framing: reply incomplete"),
    ],
)
def test_invalid_input_exits_2_with_one_line_and_no_output(data: bytes, start: str) -> None:
    code, out, err = run(["-", "--json"], stdin=data)
    assert code == 2
    assert out == ""
    assert err.startswith(start) and err.count("\n") == 1


def test_main_returns_the_status() -> None:
    assert main(["decode", "--json"]) == 0
    assert main(["decode", "--bcc", "xor"]) == 2


def test_console_script_in_a_subprocess(tmp_path: Path) -> None:
    hex_file = tmp_path / "reply.hex"
    hex_file.write_text(SPEC_HEX)
    done = subprocess.run(
        [sys.executable, "-m", "kamstrup382.cli", "decode", "--json", str(hex_file)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["bcc"]["value"] == "0x3e"
    bad = subprocess.run(
        [sys.executable, "-m", "kamstrup382.cli", "decode", "-"],
        input=SPEC[:-1] + b"x",
        capture_output=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == b""
    assert bad.stderr.decode().startswith("error: bcc: ")


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (SPEC + b"\n" * (MAX_REPLY + 1 - len(SPEC)), f"error: usage: reply of {MAX_REPLY + 1} "),
        (b"/" + b"x" * 5000, "error: usage: reply of 5001 bytes"),
        (b"ab" * (MAX_REPLY + 1), f"error: usage: reply of {MAX_REPLY + 1} bytes"),
        (b"a" * (MAX_HEX_TEXT + 1), f"error: usage: input larger than {MAX_HEX_TEXT} bytes"),
    ],
    ids=["raw-just-over", "raw-large", "hex-just-over", "text-over"],
)
def test_input_longer_than_a_reply_is_refused(data: bytes, start: str) -> None:
    code, out, err = run(["-"], stdin=data)
    assert code == 2 and out == ""
    assert err.startswith(start) and err.count("\n") == 1, err


def test_the_longest_reply_is_still_read_whole() -> None:
    """A spaced hex dump of a reply of the maximum size is not cut: the decoder judges it."""
    reply = SPEC[:-1] + b"?" + b"\r" * (MAX_REPLY - len(SPEC))
    dump = "\n".join(reply[i : i + 16].hex(" ") for i in range(0, len(reply), 16))
    assert len(dump) <= MAX_HEX_TEXT
    code, _, err = run(["-"], stdin=dump.encode())
    assert code == 2 and "usage" not in err, err


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_an_endless_input_is_refused_without_reading_it_all(how: str) -> None:
    """/dev/zero never ends: read whole, it would never return (or fill the memory)."""
    args = [sys.executable, "-m", "kamstrup382.cli", "decode"]
    with open("/dev/zero", "rb") as zero:
        done = subprocess.run(
            [*args, "/dev/zero"] if how == "file" else [*args, "-"],
            stdin=zero if how == "stdin" else subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=60,
        )
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode() == (
        f"error: usage: input larger than {MAX_HEX_TEXT} bytes: not one reply "
        f"(a reply is at most {MAX_REPLY} bytes)\n"
    )


@pytest.mark.parametrize("name", ["382c-example.bin", "382c-example.hex"])
def test_a_382c_reply_decodes_with_its_registers_named(name: str) -> None:
    code, out, err = run([str(DATA / name)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "identification  /KAM 68438BC450000  (Kamstrup 382C)"
    assert lines[1].split() == ["bcc", "xor", "0x1f", "valid"]
    assert [line.split() for line in lines[3:]] == [
        ["code", "name", "value", "unit"],
        ["0.0.0", "customer_number", "14410000"],
        ["1.8.0", "energy", "36886", "kWh"],
        ["1.8.1", "tariff_1", "36886", "kWh"],
        ["1.8.2", "tariff_2", "0", "kWh"],
        ["1.8.3", "tariff_3", "0", "kWh"],
        ["1.8.4", "tariff_4", "0", "kWh"],
        ["96.8.0", "hour_counter", "119899", "h"],
        ["0.128.1", "pulse_input", "0"],
        ["1.6.0", "actual_peak", "1.078", "kW"],
    ]
    code, out, err = run(["--json", str(DATA / name)])
    assert code == 0, err
    data = json.loads(out, parse_float=Decimal)
    assert data["dialect"] == "kamstrup-382c"
    assert list(data["registers"])[-1] == "actual_peak"
    assert data["registers"]["actual_peak"] == {
        "code": "1.6.0",
        "value": Decimal("1.078"),
        "unit": "kW",
    }
