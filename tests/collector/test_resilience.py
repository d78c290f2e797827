"""Collectors as real processes: several on one PostgreSQL, SIGKILL, restart on SQLite."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from kamstrup382.collector.schedule import next_slot, slot_of
from kamstrup382.emulator import EmulatorThread
from kamstrup382.protocol import decode_reply
from kamstrup382.storage.url import open_storage


def write_config(path: Path, url: str, ports: list[str], collector: str) -> Path:
    text = f'[storage]\nurl = "{url}"\n[collector]\n{collector}\n'
    for index, port in enumerate(ports):
        text += f'[[meters]]\nname = "m{index:03d}"\nport = "{port}"\n'
    path.write_text(text, encoding="utf-8")
    return path


def start_collector(config: Path, log: Path, *extra: str, cid: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cid:
        env["K382_COLLECTOR_ID"] = cid
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kamstrup382", "collect", "--config", str(config), "-v", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def sleep_until(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


def orphaned_leases(url: str, holder: str, slot: datetime) -> dict[str, datetime]:
    """Meters ``holder`` had claimed for ``slot`` and not finished: meter -> lease expiry."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT meter, expires_at FROM leases WHERE holder = %s AND slot = %s AND NOT done",
            (holder, slot),
        ).fetchall()
    return {meter: expires for meter, expires in rows}


@pytest.mark.slow
@pytest.mark.postgres
def test_three_collectors_share_300_meters_and_take_over_a_killed_one(
    postgres_db_url: str, tmp_path: Path
) -> None:
    interval, lease = timedelta(seconds=5), 1.5
    reclaim = lease / 4  # how often a collector claims again during a slot
    meters = 300
    names = [f"m{i:03d}" for i in range(meters)]
    with EmulatorThread(meters=meters, transport="tcp", speed=10.0, delay=0.02) as emu:
        config = write_config(
            tmp_path / "k.toml",
            postgres_db_url,
            emu.ports,
            f'interval = "5s"\nlease = {lease}\nflush_interval = 0.1\nanswer_timeout = 0.5\n',
        )
        logs = [tmp_path / f"c{i}.log" for i in range(3)]
        procs = [start_collector(config, logs[i], cid=f"c{i}") for i in range(3)]
        try:
            # two whole slots with all three, then kill c0 0.3 s into a slot: a readout takes
            # 0.6 s at speed 10, so c0 is in the middle of reading the meters it claimed
            first_full = next_slot(datetime.now(UTC) + timedelta(seconds=2), interval)
            kill_slot = first_full + 2 * interval
            sleep_until(kill_slot + timedelta(seconds=0.3))
            procs[0].send_signal(signal.SIGKILL)
            killed_at = datetime.now(UTC)
            assert procs[0].wait(timeout=10) == -signal.SIGKILL
            # what c0 left: its unfinished claims (nobody may take them before they expire)
            orphans = orphaned_leases(postgres_db_url, "c0", kill_slot)
            # one more whole slot with the two survivors, then stop them between readouts
            last_full = kill_slot + interval
            sleep_until(last_full + timedelta(seconds=3.5))
            for proc in procs[1:]:
                proc.send_signal(signal.SIGTERM)
            for proc in procs[1:]:
                assert proc.wait(timeout=20) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        complete = {name: [r for r in emu.log(i) if r.complete] for i, name in enumerate(names)}

    with open_storage(postgres_db_url) as storage:
        rows = list(storage.readings())
    logs_text = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
    assert orphans, f"c0 held no unfinished meters when killed\n{logs_text}"

    # every meter exactly once in every slot, before, during and after the kill
    per_slot: dict[datetime, Counter[str]] = {}
    for row in rows:
        per_slot.setdefault(row.slot, Counter())[row.meter] += 1
    slot = first_full
    while slot <= last_full:
        counts = per_slot.get(slot, Counter())
        missing = set(names) - set(counts)
        assert not missing, f"slot {slot}: {len(missing)} meters unread\n{logs_text}"
        assert set(counts.values()) == {1}, f"slot {slot}: doubled readings"
        slot += interval
    assert all(set(counts.values()) == {1} for counts in per_slot.values())

    # c0's unfinished meters were read by the others once their lease had expired, at the
    # next claim round after that (and never before: no meter read twice for the slot)
    taken_over = {r.meter: r.read_at for r in rows if r.slot == kill_slot and r.meter in orphans}
    assert set(taken_over) == set(orphans)
    for meter, read_at in taken_over.items():
        expired = orphans[meter]
        assert read_at >= expired - timedelta(milliseconds=50), meter
        assert read_at - expired < timedelta(seconds=reclaim + 2.0), (meter, read_at, expired)
    assert max(taken_over.values()) - killed_at < timedelta(seconds=lease + reclaim + 2.0)

    # nothing lost, nothing doubled: every stored reading is a reply the meter gave, and the
    # only replies not stored are those c0 had received but not yet written when it died (a
    # reading takes one reply per attempt: three where a collector confirmed a meter it had not
    # read before)
    used = Counter[str]()
    for row in rows:
        assert row.values in [r.values for r in complete[row.meter]], row.meter
        used[row.meter] += row.attempts
    unstored = {name for name in names if len(complete[name]) != used[name]}
    assert all(1 <= len(complete[name]) - used[name] <= 3 for name in unstored)
    assert unstored <= set(orphans)


def kill_while_writing(proc: subprocess.Popen[bytes], path: Path, timeout: float = 20.0) -> None:
    """SIGKILL ``proc`` at a moment it holds the SQLite write lock (inside a transaction).

    A probe connection tries ``BEGIN IMMEDIATE`` without waiting: "database is locked" means a
    write transaction is open in the collector right now.
    """
    deadline = time.monotonic() + timeout
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        while time.monotonic() < deadline:
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                proc.send_signal(signal.SIGKILL)
                return
            probe.execute("ROLLBACK")
            time.sleep(0.0005)
    finally:
        probe.close()
    raise AssertionError("the collector never held the write lock")


def wait_for_readings(path: Path, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
                try:
                    if db.execute("SELECT count(*) FROM readings").fetchone()[0] >= count:
                        return
                except sqlite3.OperationalError:  # no table yet
                    pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} readings after {timeout} s")


@pytest.mark.slow
def test_sigkill_on_sqlite_mid_write_then_restart(tmp_path: Path) -> None:
    path = tmp_path / "readings.sqlite"
    url = f"sqlite:///{path}"
    meters = 100
    with EmulatorThread(meters=meters, transport="tcp", speed=200.0, delay=0.02) as emu:
        config = write_config(
            tmp_path / "k.toml",
            url,
            emu.ports,
            'interval = "1s"\nbatch_size = 3\nflush_interval = 0.01\n',
        )
        log = tmp_path / "c.log"
        for round_ in range(3):  # kill it three times, each time inside a write transaction
            proc = start_collector(config, log)
            wait_for_readings(path, meters * round_ + 3)
            kill_while_writing(proc, path)
            assert proc.wait(timeout=10) == -signal.SIGKILL

        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with open_storage(url) as storage:
            rows = list(storage.readings())
            attempts = list(storage.attempts())
        assert len(rows) > meters
        # every readout succeeded; a collector started late in a 1 s slot may record meters
        # it had no time for as missed (no attempt made)
        failed = [a for a in attempts if not a.ok]
        assert all(a.kind == "missed" and a.attempts == 0 for a in failed), failed[:3]
        for row in rows:  # every stored row is whole: its telegram gives its values
            assert decode_reply(row.raw).meter_values() == row.values
        assert Counter((r.meter, r.slot) for r in rows).most_common(1)[0][1] == 1

        # restart: the next cycle proceeds
        before = datetime.now(UTC)
        proc = start_collector(config, log, "--once")
        assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")[-3000:]
    with open_storage(url) as storage:
        latest = [storage.latest(f"m{i:03d}") for i in range(meters)]
    assert all(r is not None and r.slot >= slot_of(before, timedelta(seconds=1)) for r in latest)
