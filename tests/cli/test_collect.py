"""``k382 collect``: --once exit codes, config errors, --emulator, SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kamstrup382.cli import collect as collect_module
from kamstrup382.cli import main
from kamstrup382.collector.runtime import GC_THRESHOLD
from kamstrup382.collector.spill import decode_line
from kamstrup382.emulator import EmulatorThread
from kamstrup382.reader import new_event_loop
from kamstrup382.storage import KmpReadingRecord, ReadingRecord
from kamstrup382.storage.url import open_storage
from tests.storage.full import FILLER, full_sqlite


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"socket://127.0.0.1:{port}"


def write_config(path: Path, url: str, ports: list[str], collector: str = "") -> Path:
    text = f'[storage]\nurl = "{url}"\n[collector]\nanswer_timeout = 0.3\nbackoff = 0.05\n'
    text += collector
    for index, port in enumerate(ports):
        text += f'[[meters]]\nname = "m{index}"\nport = "{port}"\n'
    path.write_text(text, encoding="utf-8")
    return path


def count_rows(url: str) -> tuple[int, int]:
    """Readouts stored: (succeeded, failed). Slots stored as ``missed`` are not readouts (a
    collector started late in a 1 s slot may have no time left for some meters)."""
    with open_storage(url) as storage:
        attempts = [a for a in storage.attempts() if a.kind != "missed"]
    return sum(a.ok for a in attempts), sum(not a.ok for a in attempts)


def test_once_exits_zero_when_every_meter_was_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with EmulatorThread(meters=3, transport="tcp", speed=200, delay=0.02) as emu:
        cfg = write_config(tmp_path / "k.toml", url, emu.ports)
        assert main(["collect", "--config", str(cfg), "--once"]) == 0
    assert count_rows(url) == (3, 0)


def test_once_exits_non_zero_with_a_line_per_failed_meter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with EmulatorThread(meters=1, transport="tcp", speed=200, delay=0.02) as emu:
        ports = [emu.ports[0], closed_port(), closed_port()]
        cfg = write_config(tmp_path / "k.toml", url, ports, "retries = 0\n")
        assert main(["collect", "--config", str(cfg), "--once"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err if line.startswith("m")] == ["m1", "m2"]
    assert all(": connection: " in line for line in err if line.startswith(("m1", "m2")))
    assert count_rows(url) == (1, 2)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[[meters]]\nname = "a"\nport = "socket://x:1"\nline = "9N1"\n', "meters[0].line"),
        ('[collector]\ninterval = "often"\n', "collector.interval"),
        ("[[meters]]\nname = 'a'\n", "meters[0].port"),
    ],
)
def test_config_error_exits_two_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str
) -> None:
    cfg = tmp_path / "k.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{tmp_path}/r.sqlite"\n' + toml, encoding="utf-8")
    assert main(["collect", "--config", str(cfg), "--once"]) == 2
    assert f"config error: {key}: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("retries = -1\n", "storage.retries"),
        ('retry_delay = "1e309s"\n', "storage.retry_delay"),
        ("max_pending = 0\n", "storage.max_pending"),
        ("spill_dir = 5\n", "storage.spill_dir"),
        ("spill = 5\n", "storage.spill"),
    ],
)
def test_a_bad_storage_setting_exits_two_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str
) -> None:
    cfg = write_config(tmp_path / "k.toml", f"sqlite:///{tmp_path}/r.sqlite", [closed_port()])
    cfg.write_text(cfg.read_text().replace("[collector]", toml + "[collector]"))
    assert main(["collect", "--config", str(cfg), "--once"]) == 2
    assert f"config error: {key}: " in capsys.readouterr().err


def refuse_writes(path: Path) -> None:
    """Make the SQLite database at ``path`` read-only to SQLite, for any user (root too, whom
    ``chmod`` does not stop): a header whose write version is above 2 makes SQLite open the
    file read-only (sqlite.org/fileformat.html, "File format version numbers"), and every
    write fails with ``attempt to write a readonly database``, as on a read-only mount."""
    with path.open("r+b") as handle:
        handle.seek(18)
        assert handle.read(2) == b"\x02\x02"  # WAL, read and write
        handle.seek(18)
        handle.write(b"\x03")


def allow_writes(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(18)
        handle.write(b"\x02")


@pytest.mark.parametrize("failing", ["full", "read-only"])
def test_once_into_a_storage_that_refuses_spills_exits_three_and_the_next_run_stores_them(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    failing: str,
) -> None:
    """The batch is tried ``retries`` more times, then spilled beside the database; the exit
    status and stderr say how many were not stored and where they are; the next start stores
    them and empties the journal."""
    db = tmp_path / "r.sqlite"
    url = f"sqlite:///{db}"
    if failing == "full":
        refusing = full_sqlite(db)
    else:
        open_storage(url).close()
        refuse_writes(db)
        refusing = url
    settings = "retries = 2\nretry_delay = 0.02\n"
    with EmulatorThread(meters=2, transport="tcp", speed=200, delay=0.02) as emu:
        ports = [emu.ports[0], emu.ports[1], closed_port()]
        cfg = write_config(tmp_path / "k.toml", refusing, ports, "retries = 0\n")
        cfg.write_text(cfg.read_text().replace("[collector]", f"{settings}[collector]"))
        start = time.monotonic()
        assert main(["collect", "--config", str(cfg), "--once"]) == 3
        assert time.monotonic() - start < 20  # bounded: it used to try for ever
        err = capsys.readouterr().err
        journal = tmp_path / "r.sqlite.spill.jsonl"
        assert (
            f"2 readings and 1 failures not stored: spilled to {journal} (stored at the next start)"
        ) in err
        assert any("not stored after 3 tries" in r.getMessage() for r in caplog.records)
        assert journal.stat().st_mode & 0o777 == 0o600
        spilled = [decode_line(line) for line in journal.read_text().splitlines()]
        assert sorted(type(r).__name__ for r in spilled) == [
            "FailureRecord",
            "ReadingRecord",
            "ReadingRecord",
        ]
        caplog.clear()

        if failing == "full":
            write_config(cfg, url, ports, "retries = 0\n")  # room again: no cap
        else:
            allow_writes(db)
        assert main(["collect", "--config", str(cfg), "--once"]) == 1  # m2 still unreachable
    assert any(f"stored 3 spilled results from {journal}" == r.getMessage() for r in caplog.records)
    assert not journal.exists()
    with open_storage(url) as storage:
        readings = [r for r in storage.readings() if r.meter != FILLER]
        failures = [a for a in storage.attempts() if not a.ok]
    # the spilled readings exactly (the second run's for the same slot are kept once; it may
    # have run in the next slot)
    expected = sorted((r for r in spilled if isinstance(r, ReadingRecord)), key=lambda r: r.meter)
    assert [r for r in readings if r.slot == expected[0].slot] == expected
    assert [f.meter for f in failures] == ["m2", "m2"]


def test_without_config_or_emulator_it_says_what_to_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["collect", "--once"]) == 2
    assert "--emulator" in capsys.readouterr().err


def test_emulator_option_works_without_a_meter(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    argv = ["collect", "--emulator", "3", "--speed", "200", "--storage", url, "--once"]
    assert main(argv) == 0
    with open_storage(url) as storage:
        assert sorted(storage.meters()) == ["emulated-1", "emulated-2", "emulated-3"]


def test_kmp_emulator_option_reads_kmp_meters_beside_mode_a_ones(tmp_path: Path) -> None:
    """On the readers' event loop (uvloop where installed), whose stream transports are not
    asyncio's own classes: the KMP emulator serves them alike."""
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    argv = ["collect", "--emulator", "1", "--kmp-emulator", "2", "--speed", "200"]
    assert main([*argv, "--storage", url, "--once"]) == 0
    with open_storage(url) as storage:
        readings = {r.meter: r for r in storage.readings()}
    assert sorted(readings) == ["emulated-1", "emulated-kmp-1", "emulated-kmp-2"]
    assert [r.protocol for _, r in sorted(readings.items())] == ["iec", "kmp", "kmp"]
    kmp = readings["emulated-kmp-1"]
    assert isinstance(kmp, KmpReadingRecord) and kmp.values["energy"] >= 0
    assert kmp.serial != readings["emulated-kmp-2"].serial  # type: ignore[union-attr]


def test_collect_and_its_emulator_run_on_the_readers_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop where installed (the in-process emulator's meters are read on it), with the
    garbage collector's thresholds raised."""
    loops: list[asyncio.AbstractEventLoop] = []
    thresholds: list[tuple[int, int, int]] = []
    before = gc.get_threshold()

    def factory() -> asyncio.AbstractEventLoop:
        loops.append(new_event_loop())
        thresholds.append(gc.get_threshold())
        return loops[-1]

    monkeypatch.setattr(collect_module, "new_event_loop", factory)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert main(["collect", "--emulator", "2", "--speed", "200", "--storage", url, "--once"]) == 0
    assert len(loops) == 1
    if importlib.util.find_spec("uvloop") is not None:
        assert type(loops[0]).__module__.startswith("uvloop")
    assert count_rows(url) == (2, 0)
    # the garbage collector's thresholds raised while collecting, restored after
    assert thresholds == [GC_THRESHOLD]
    assert gc.get_threshold() == before != GC_THRESHOLD


def run_collect(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kamstrup382", "collect", "--config", str(config), "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def wait_for_rows(url: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(url.removeprefix("sqlite:///")).exists() and sum(count_rows(url)) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} rows after {timeout} s")


@pytest.mark.slow
def test_sigterm_stops_cleanly_between_and_during_readouts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with EmulatorThread(meters=3, transport="tcp", speed=200, delay=0.02) as emu:
        cfg = write_config(tmp_path / "k.toml", url, emu.ports, 'interval = "1s"\ngrace = 5\n')
        proc = run_collect(cfg)
        try:
            wait_for_rows(url, 6, timeout=20)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert proc.returncode == 0, out
    ok, failed = count_rows(url)
    assert failed == 0 and ok >= 6

    # now with readouts in flight at the true 300 baud (about 6 s each) and a short grace:
    url2 = f"sqlite:///{tmp_path / 'r2.sqlite'}"
    with EmulatorThread(meters=2, transport="tcp", speed=1.0, delay=0.02) as emu:
        cfg = write_config(tmp_path / "k2.toml", url2, emu.ports, "grace = 0.5\n")
        proc = run_collect(cfg)
        try:
            deadline = time.monotonic() + 20
            while not all(emu.log(i) for i in range(2)) and time.monotonic() < deadline:
                time.sleep(0.05)  # until both readouts have begun
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        finally:
            proc.kill()
        # both readouts had begun and were cut short after the grace: abandoned
        logs = [emu.log(i) for i in range(2)]
    assert proc.returncode == 0, out
    assert [len(log) for log in logs] == [1, 1]
    assert not any(readout.complete for log in logs for readout in log)
    assert count_rows(url2) == (0, 0)


def test_a_scheduled_run_stopped_while_the_storage_refuses_spills_and_exits_three(
    tmp_path: Path,
) -> None:
    """SIGTERM with results the storage refused: each batch gets ``retries`` more tries, then
    goes to the journal; the exit status and the output say so."""
    db = tmp_path / "r.sqlite"
    url = f"sqlite:///{db}"
    open_storage(url).close()
    refuse_writes(db)
    with EmulatorThread(meters=2, transport="tcp", speed=200, delay=0.02) as emu:
        cfg = write_config(tmp_path / "k.toml", url, emu.ports, 'interval = "1s"\n')
        cfg.write_text(cfg.read_text().replace("[collector]", "retries = 1\n[collector]"))
        proc = run_collect(cfg)
        try:
            deadline = time.monotonic() + 20
            # two slots read: a first reading is heard in three telegrams, the next in one
            while not all(len(emu.log(i)) >= 4 for i in range(2)):
                assert time.monotonic() < deadline, "no readouts"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 3, out
    journal = tmp_path / "r.sqlite.spill.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) >= 4
    assert f"{len(lines)} readings and 0 failures not stored: spilled to {journal}" in out


@pytest.mark.slow
def test_sighup_takes_the_new_meters_and_keeps_running_on_a_bad_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    every = 'interval = "1s"\ngrace = 5\n'
    with EmulatorThread(meters=2, transport="tcp", speed=200, delay=0.02) as emu:
        cfg = write_config(tmp_path / "k.toml", url, emu.ports[:1], every)
        proc = run_collect(cfg)
        try:
            wait_for_rows(url, 2, timeout=20)
            write_config(cfg, url, emu.ports, every)  # m1 added
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not _meters_read(url) >= {"m0", "m1"}:
                time.sleep(0.1)
            assert _meters_read(url) == {"m0", "m1"}
            cfg.write_text(cfg.read_text() + "[collector]\nbogus = 1\n")  # a broken file
            proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            before = sum(count_rows(url))
            wait_for_rows(url, before + 2, timeout=20)  # still collecting both
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert proc.returncode == 0, out
    assert "reload of" in out and "added 1 (m1)" in out
    # the broken file: named, and the running configuration kept
    assert "reload: config error:" in out and "the running configuration is kept" in out
    assert "Traceback" not in out


def _meters_read(url: str) -> set[str]:
    if not Path(url.removeprefix("sqlite:///")).exists():
        return set()
    with open_storage(url) as storage:
        return {r.meter for r in storage.readings()}
