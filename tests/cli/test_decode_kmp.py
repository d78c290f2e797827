"""``k382 decode`` of KMP captures: recognised by the first byte, raw or hex, text and --json,
a bad CRC exits 2 naming the crc."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from kamstrup382.cli import cli
from kamstrup382.protocol.kmp import (
    Direction,
    Frame,
    GetRegisterRequest,
    RegisterReply,
    RegisterValue,
    encode_frame,
    encode_message,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "kmp"
REQUEST = encode_message(GetRegisterRequest((0x0001, 0x041F)))
REPLY = encode_message(
    RegisterReply(
        (
            RegisterValue.of(0x0001, 2, Decimal("123456")),
            RegisterValue.of(0x041F, 33, Decimal("229.7")),
            RegisterValue.of(0x0434, 34, Decimal("-1.25")),
        )
    )
)


def run(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["decode", *args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("form", ["raw", "hex"])
def test_reply_as_json(form: str) -> None:
    data = REPLY if form == "raw" else REPLY.hex(" ").encode()
    code, out, err = run(["--json", "-"], data)
    assert (code, err) == (0, "")
    obj = json.loads(out, parse_float=Decimal)
    assert obj["protocol"] == "kmp"
    assert obj["direction"] == "reply"
    assert obj["cid"] == 0x10
    assert obj["registers"] == [
        {"id": 1, "name": "energy", "value": 123456, "unit": "kWh"},
        {"id": 0x041F, "name": "voltage_l2", "value": Decimal("229.7"), "unit": "V"},
        {"id": 0x0434, "name": "current_l1", "value": Decimal("-1.25"), "unit": "A"},
    ]
    assert '"value": 229.7' in out  # the meter's digits, as a JSON number


def test_published_reply_file_as_text() -> None:
    code, out, _ = run([str(DATA / "doc-get-register-reply.hex")])
    assert code == 0
    assert out.splitlines()[0] == (
        "kmp reply  address 0x3f  get_register (cid 0x10)  crc 0x6303 valid"
    )
    assert out.splitlines()[-1].split() == ["0x0080", "-", "1959120400000000000000000", "kW"]


def test_request_with_its_reply_gives_both_frames() -> None:
    code, out, _ = run(["--json", "-"], REQUEST + REPLY)
    assert code == 0
    obj = json.loads(out)
    assert [f["direction"] for f in obj["frames"]] == ["request", "reply"]
    assert obj["frames"][0]["registers"][1] == {
        "id": 0x041F,
        "name": "voltage_l2",
        "value": None,
        "unit": None,
    }


def test_bad_crc_exits_2_naming_the_crc() -> None:
    damaged = bytearray(REPLY)
    damaged[5] ^= 0x10
    code, out, err = run(["-"], bytes(damaged))
    assert code == 2
    assert out == ""
    assert err.startswith("error: crc: KMP crc 0x")
    assert "computed" in err


def test_broken_stuffing_exits_2() -> None:
    code, _, err = run(["-"], bytes.fromhex("40 3F 10 1B 01 00 00 0D"))
    assert code == 2
    assert err.startswith("error: stuffing: ")


def test_unknown_command_exits_2() -> None:
    code, _, err = run(["-"], encode_frame(Frame(Direction.REPLY, 0x3F, 0x99, b"")))
    assert code == 2
    assert err.startswith("error: command: ")


def test_mode_a_still_decodes() -> None:
    code, out, _ = run([])
    assert code == 0 and out.startswith("identification")
