"""``k382 read --protocol kmp|auto`` against the emulated meters over loopback TCP."""

from __future__ import annotations

import csv
import io
import json

import jsonschema
import pytest
from click.testing import CliRunner

from kamstrup382.cli import cli
from kamstrup382.documents import reading_schema
from kamstrup382.emulator import EmulatorThread
from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_server import KmpEmulatorThread


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["read", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_kmp_json() -> None:
    with KmpEmulatorThread(1) as emulator:
        code, out, err = run([emulator.ports[0], "--protocol", "kmp", "--json"])
    assert (code, err) == (0, "")
    obj = json.loads(out)
    jsonschema.validate(obj, reading_schema())  # the one shape of a reading, KMP's branch
    assert obj["protocol"] == "kmp"
    assert obj["baud"] == 9600 and obj["stop_bits"] == 1
    assert obj["timing"]["exchanges"] == 2
    assert list(obj["registers"])[:3] == ["energy", "energy_out", "energy_hires"]
    assert obj["registers"]["energy"]["code"] == "0x0001"
    assert obj["registers"]["energy_hires"]["value"] == 53.0 and '"value": 53.00' in out
    assert "identification" not in obj and "bcc" not in obj
    # a KMP document is not a mode A one, nor the other way round
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**obj, "bcc": {"algorithm": "sum7"}}, reading_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in obj.items() if k != "protocol"}, reading_schema())


def test_kmp_table_with_chosen_registers() -> None:
    with KmpEmulatorThread(1) as emulator:
        code, out, _ = run([emulator.ports[0], "--protocol", "kmp", "--registers", "power,0x041F"])
    assert code == 0
    assert out.splitlines()[0].endswith("(KMP, 9600 baud 8N1)")
    assert [line.split()[1] for line in out.splitlines()[-2:]] == ["power", "voltage_l2"]


def test_kmp_csv_watch() -> None:
    with KmpEmulatorThread(1) as emulator:
        code, out, _ = run(
            [emulator.ports[0], "--protocol", "kmp", "--csv", "--watch", "0.2", "--count", "2"]
        )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:4] == ["requested_at", "port", "energy", "energy_out"]
    assert len(rows) == 3 and rows[1][2] == "53"


def test_auto_says_what_it_found_and_reads_with_it() -> None:
    with KmpEmulatorThread(1) as emulator:
        code, out, err = run([emulator.ports[0], "--protocol", "auto", "--timeout", "0.1"])
    assert code == 0
    assert err.startswith("auto: found KMP at 9600 baud 8N1 (meter type 0x0382, software A1)")
    assert "energy_hires" in out
    with EmulatorThread(1, speed=10) as emulator:
        code, out, err = run([emulator.ports[0], "--protocol", "auto", "--timeout", "0.1"])
        requests = len(emulator.log(0))
    assert code == 0
    assert err.startswith("auto: found IEC 61107 mode A at 300 baud")
    assert "customer_number" in out
    assert requests == 1  # the reading made while detecting is the one printed


def test_kmp_failure_exits_1_with_the_error() -> None:
    faults = KmpFaults.parse("crc=1")
    with KmpEmulatorThread(1, faults=faults) as emulator:
        code, out, err = run([emulator.ports[0], "--protocol", "kmp", "--retries", "0"])
    assert code == 1
    assert out == ""
    assert err.startswith("error: crc: KMP crc 0x")


def test_registers_need_kmp_and_must_exist() -> None:
    code, _, err = run(["socket://127.0.0.1:9", "--registers", "energy"])
    assert code == 2 and "--registers is for --protocol kmp" in err
    code, _, err = run(["socket://127.0.0.1:9", "--protocol", "kmp", "--registers", "nope"])
    assert code == 2 and "neither a register name" in err
