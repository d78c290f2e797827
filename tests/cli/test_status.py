"""``k382 status``: per meter last success, last error and success rate, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.outputs.health import OutputHealth, default_state_file, write_health
from kamstrup382.outputs.influxdb import STATES as INFLUX_STATES
from kamstrup382.outputs.mqtt import STATES
from kamstrup382.storage.url import open_storage
from tests.storage.samples import failure, reading


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'k382.sqlite'}"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def filled(storage_url: str) -> str:
    with open_storage(storage_url) as storage:
        storage.record(
            [reading("house", 0), reading("house", 1), reading("house", 3), reading("barn", 0)],
            [failure("house", 2, "bcc"), failure("shed", 0, "timeout"), failure("shed", 1)],
        )
    return storage_url


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_status_per_meter(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--storage", filled, "--json")
    assert code == 0
    status = {s["meter"]: s for s in json.loads(out)}
    assert list(status) == ["barn", "house", "shed"]
    house = status["house"]
    assert house["last_success"] == reading("house", 3).read_at.isoformat()
    assert house["last_error"] == {
        "at": failure("house", 2).failed_at.isoformat(),
        "kind": "bcc",
        "message": failure("house", 2).message,
    }
    assert (house["successes"], house["failures"], house["success_rate"]) == (3, 1, 0.75)
    assert status["barn"]["last_error"] is None
    assert status["barn"]["success_rate"] == 1.0
    shed = status["shed"]
    assert shed["last_success"] is None
    assert shed["last_error"]["at"] == failure("shed", 1).failed_at.isoformat()
    assert (shed["successes"], shed["failures"], shed["success_rate"]) == (0, 2, 0.0)


def test_table_has_one_aligned_line_per_meter(
    filled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "--storage", filled)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:2] == ["METER", "LAST"]
    assert [line.split()[0] for line in lines] == ["barn", "house", "shed"]
    house = lines[1]
    assert "2026-03-01 00:45:01Z" in house  # last success (slot 3, read a second in)
    assert "75.0% (3/4)" in house
    assert house.endswith(f"2026-03-01 00:30:02Z bcc: {failure('house', 2).message}")
    assert lines[0].rstrip().endswith("-")  # barn: no error
    # the columns line up: every rate starts under the header's SUCCESS RATE
    at = header.index("SUCCESS RATE")
    assert [line[at - 2 : at + 1].strip()[:1].isdigit() for line in lines] == [True] * 3
    assert all(line[at - 2 : at] == "  " for line in lines)


def test_config_names_the_storage_and_an_empty_one_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    open_storage(url).close()  # made by a collector that has stored nothing yet
    config = tmp_path / "k382.toml"
    config.write_text(f'[storage]\nurl = "{url}"\n', encoding="utf-8")
    code, out, err = _run(capsys, "--config", str(config))
    assert (code, out) == (0, "")
    assert "no attempts stored yet" in err
    code, out, _ = _run(capsys, "--config", str(config), "--json")
    assert (code, json.loads(out)) == (0, [])


def test_errors_exit_non_zero_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "--storage", "mysql://x/y")
    assert code == 2
    assert "storage.url" in err
    missing = tmp_path / "nope.toml"
    code, _, err = _run(capsys, "--config", str(missing))
    assert code == 2
    assert "config file not found" in err
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"x" * 4096)
    code, _, err = _run(capsys, "--storage", f"sqlite:///{garbage}")
    assert code == 1
    assert err.startswith("error: ")


def test_the_mqtt_outputs_state_is_shown_or_said_unknown(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "k382.toml"
    base = f'[storage]\nurl = "{filled}"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n'
    config.write_text(base, encoding="utf-8")
    code, out, _ = _run(capsys, "--config", str(config))
    beside = default_state_file(filled, "mqtt")
    if beside is None:  # PostgreSQL: no file unless named
        assert out.endswith("\nmqtt: state unknown: no state file: name one in [mqtt] state_file\n")
        state_file = tmp_path / "mqtt-state.json"
        config.write_text(base + f'state_file = "{state_file}"\n', encoding="utf-8")
    else:
        assert f"mqtt: state unknown: no state in {beside} yet" in out
        state_file = beside
    since = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    write_health(
        state_file,
        OutputHealth(
            output="mqtt",
            state="login_refused",
            states=STATES,
            since=since,
            detail="[code:135] Not authorized",
            retry_at=since + timedelta(minutes=5),
            counters={"login_refusals": 1},
        ),
    )
    code, out, _ = _run(capsys, "--config", str(config))
    assert code == 0
    header, line = out.splitlines()[-2:]
    assert header.split() == ["OUTPUT", "STATE", "SINCE", "DETAIL"]
    assert line.split(maxsplit=4) == [
        "mqtt",
        "login_refused",
        "2026-03-01",
        "10:00:00Z",
        "[code:135] Not authorized (next try 2026-03-01 10:05:00Z)",
    ]
    code, out, _ = _run(capsys, "--config", str(config), "--json")
    assert code == 0 and isinstance(json.loads(out), list)  # the JSON stays one array of meters


def test_the_influxdb_outputs_state_is_shown_beside_mqtts(
    filled: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "k382.toml"
    influx_state, mqtt_state = tmp_path / "influxdb.json", tmp_path / "mqtt.json"
    config.write_text(
        f'[storage]\nurl = "{filled}"\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:1"\nstate_file = "{mqtt_state}"\n'
        f'[influxdb]\nurl = "http://127.0.0.1:1"\ndatabase = "k382"\n'
        f'state_file = "{influx_state}"\n',
        encoding="utf-8",
    )
    code, out, _ = _run(capsys, "--config", str(config))
    assert code == 0
    assert f"influxdb: state unknown: no state in {influx_state} yet" in out
    assert f"mqtt: state unknown: no state in {mqtt_state} yet" in out
    since = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    write_health(
        influx_state,
        OutputHealth(
            output="influxdb",
            state="unreachable",
            states=INFLUX_STATES,
            since=since,
            detail="ConnectError: [Errno 111] Connection refused",
            counters={"written": 12, "rejected": 0},
        ),
    )
    code, out, _ = _run(capsys, "--config", str(config))
    assert code == 0
    [line] = [line for line in out.splitlines() if line.startswith("influxdb ")]
    assert line.split(maxsplit=4) == [
        "influxdb",
        "unreachable",
        "2026-03-01",
        "10:00:00Z",
        "ConnectError: [Errno 111] Connection refused",
    ]
    assert "mqtt: state unknown" in out  # the other output's state still said
