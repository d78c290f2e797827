"""``k382 demo``: one command starts an emulated meter, the collector and the dashboard."""

from __future__ import annotations

import signal
import socket
import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from kamstrup382.cli import main
from kamstrup382.cli.demo import DEMO_SETTINGS, NIGHT_TARIFF
from kamstrup382.emulator import TariffSchedule
from kamstrup382.protocol import BccMode, decode_reply
from kamstrup382.storage.url import open_storage
from tests.web.demo_process import DemoProcess

pytestmark = pytest.mark.slow


def test_demo_collects_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite"
    demo = DemoProcess(db=db, factor=5760)
    with demo:
        assert demo.url.startswith("http://127.0.0.1:")
        # 11 hours of virtual time from midnight (7 s of real time): the night, the morning
        rows = demo.wait_for_readings(44)
        slots = [datetime.fromisoformat(r["slot"]) for r in rows]
        assert all((b - a).total_seconds() % 900 == 0 for a, b in pairwise(slots))
        assert rows[0]["identification"]["type_number"]["text"] == DEMO_SETTINGS.type_number
        assert rows[0]["registers"]["customer_number"]["value"] == DEMO_SETTINGS.customer_number
        meters = httpx.get(f"{demo.url}/api/meters").json()["meters"]
        assert [m["name"] for m in meters] == ["demo"]
        page = httpx.get(f"{demo.url}/")
        assert page.status_code == 200
        assert 'data-meter="demo"' in page.text
        assert demo.stop() == 0
    assert any("Dashboard: http://127.0.0.1:" in line for line in demo.lines)
    assert demo.lines[-1] == "k382 demo stopped."
    assert not any("Traceback" in line for line in demo.lines)
    # what the dashboard showed is in the SQLite file, and is what the meter sent
    with open_storage(f"sqlite:///{db}") as storage:
        stored = list(storage.readings("demo"))
    assert len(stored) >= len(rows)
    for record in stored:
        assert decode_reply(record.raw, bcc=BccMode.AUTO).meter_values() == record.values
    energy = [r.values.energy for r in stored]
    assert energy == sorted(energy)
    assert energy[-1] > energy[0]  # a household uses energy
    # the night tariff: between two readings inside 22:00-06:00 only tariff 2 counts, between
    # two readings inside the day only tariff 1
    night = TariffSchedule.parse(NIGHT_TARIFF)
    nights = days = 0
    for a, b in pairwise(stored):
        tariffs = {night.tariff_at(a.read_at), night.tariff_at(b.read_at)}
        if b.read_at - a.read_at > timedelta(minutes=20) or len(tariffs) > 1:
            continue
        if tariffs == {2}:
            nights += 1
            assert b.values.tariff_1 == a.values.tariff_1, (a.read_at, b.read_at)
        else:
            days += 1
            assert b.values.tariff_2 == a.values.tariff_2, (a.read_at, b.read_at)
    assert nights >= 10 and days >= 10
    first, last = stored[0].values, stored[-1].values
    assert last.tariff_1 > first.tariff_1 and last.tariff_2 > first.tariff_2


def test_demo_stops_on_sigterm(tmp_path: Path) -> None:
    with DemoProcess(db=tmp_path / "demo.sqlite", factor=5760) as demo:
        demo.wait_for_readings(2)
        assert demo.stop(sig=signal.SIGTERM) == 0
    assert demo.lines[-1] == "k382 demo stopped."
    assert not any("Traceback" in line for line in demo.lines)


def test_demo_answers_at_the_loopback_address_it_prints(tmp_path: Path) -> None:
    with DemoProcess("--http", "127.0.0.2:0", db=tmp_path / "demo.sqlite") as demo:
        assert demo.url.startswith("http://127.0.0.2:")
        demo.wait_for_readings(1)
        assert httpx.get(f"{demo.url}/").status_code == 200
        assert httpx.get(demo.url + "/", headers={"Host": "evil.example"}).status_code == 400
        assert demo.stop() == 0


def test_demo_wants_a_fresh_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "old.sqlite"
    db.write_bytes(b"")
    assert main(["demo", "--db", str(db), "--http", "127.0.0.1:0"]) == 2
    assert "fresh" in capsys.readouterr().err


def test_demo_refuses_other_addresses_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("K382_TOKEN", raising=False)
    assert main(["demo", "--http", "0.0.0.0:0"]) == 2
    assert "without a token" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("--tariff", "22:00-25:00", "tariff_schedule"), ("--faults", "flip=2", "flip")],
)
def test_demo_refuses_a_bad_option_naming_it(
    capsys: pytest.CaptureFixture[str], option: str, value: str, named: str
) -> None:
    assert main(["demo", "--http", "127.0.0.1:0", option, value]) == 2
    assert named in capsys.readouterr().err


def test_demo_on_a_busy_port_says_so_and_cleans_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        db = tmp_path / "demo.sqlite"
        assert main(["demo", "--http", f"127.0.0.1:{port}", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: usage: Invalid value for '--http': cannot listen on 127.0.0.1")
    assert "--http 127.0.0.1:0 takes any free port" in err
    assert err.count("\n") == 1
    with open_storage(f"sqlite:///{db}") as storage:  # closed and readable again
        assert list(storage.meters()) in ([], ["demo"])


@pytest.mark.parametrize(
    "case",
    [
        (["--http", "127.0.0.1:99999"], "--http", "port"),
        (["--http", "[zz]:1"], "--http", ""),
        (["--http", "0.0.0.0:0"], "--http", "without a token"),
        (["--db", "{tmp}/no/such/dir/demo.sqlite"], "--db", "No such file or directory"),
        (["--db", "{tmp}/a-file/demo.sqlite"], "--db", "Not a directory"),
        (["--db", "{tmp}/a-file"], "--db", "exists"),
        (["--db", "{tmp}"], "--db", "directory"),
        (["--tariff", "nonsense"], "--tariff", ""),
        (["--faults", "flip=nan"], "--faults", ""),
        (["--speed-factor", "inf"], "--speed-factor", "range"),
        (["--speed-factor", "nan"], "--speed-factor", ""),
        (["--line-speed", "1e309"], "--line-speed", ""),
        (["--interval", "99999999999999d"], "--interval", ""),
        (["--start", "9999-01-01"], "--start", "years"),
        (["--no-such-option"], "--no-such-option", ""),
    ],
)
def test_every_usage_error_exits_2_in_one_line_naming_the_option(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[list[str], str, str],
) -> None:
    args, option, said = case
    monkeypatch.delenv("K382_TOKEN", raising=False)
    monkeypatch.delenv("K382_HTTP_TOKEN", raising=False)
    (tmp_path / "a-file").write_bytes(b"")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--http" not in argv:
        argv += ["--http", "127.0.0.1:0"]
    assert main(["demo", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: usage: ") and err.count("\n") == 1, err
    assert option in err and said in err, err
    assert "Traceback" not in err


def test_keep_keeps_the_readings_and_the_page_says_its_clock_is_virtual(tmp_path: Path) -> None:
    with DemoProcess("--keep", cwd=tmp_path) as demo:
        page = httpx.get(f"{demo.url}/", timeout=10).text
        assert (
            '<p id="note" class="banner">A demo: an emulated meter read on a virtual clock' in page
        )
        deadline = time.monotonic() + 30
        while not httpx.get(f"{demo.url}/api/meters", timeout=10).json()["meters"]:
            assert time.monotonic() < deadline, "no reading in 30 s"
            time.sleep(0.2)
        status = demo.stop()
    assert status == 0
    (kept,) = tmp_path.glob("k382-demo-*.sqlite")
    assert f"The readings are kept in {kept}" in "\n".join(demo.lines)
    with open_storage(f"sqlite:///{kept}") as storage:
        assert list(storage.meters()) == ["demo"]
