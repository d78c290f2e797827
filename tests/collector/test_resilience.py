"""Collectors as real processes: several on one PostgreSQL, SIGKILL, restart on SQLite."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

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


@pytest.mark.slow
@pytest.mark.postgres
def test_three_collectors_share_300_meters_and_take_over_a_killed_one(
    postgres_db_url: str, tmp_path: Path
) -> None:
    interval, lease = timedelta(seconds=5), 1.5
    meters = 300
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
            # two whole slots with all three, then kill c0 shortly after a slot began
            first_full = next_slot(datetime.now(UTC) + timedelta(seconds=2), interval)
            kill_slot = first_full + 2 * interval
            sleep_until(kill_slot + timedelta(seconds=0.3))
            procs[0].send_signal(signal.SIGKILL)
            killed_at = datetime.now(UTC)
            procs[0].wait(timeout=10)
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
        sent = Counter({f"m{i:03d}": len(emu.sent(i)) for i in range(meters)})

    with open_storage(postgres_db_url) as storage:
        rows = list(storage.readings())
    per_slot: dict[datetime, Counter[str]] = {}
    for row in rows:
        per_slot.setdefault(row.slot, Counter())[row.meter] += 1
    names = {f"m{i:03d}" for i in range(meters)}
    logs_text = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
    slot = first_full
    while slot <= last_full:
        counts = per_slot.get(slot, Counter())
        missing = names - set(counts)
        assert not missing, f"slot {slot}: {len(missing)} meters unread\n{logs_text}"
        assert set(counts.values()) == {1}, f"slot {slot}: doubled readings"
        slot += interval
    # the meters c0 held when it died were read by the others within the lease time
    late = [r.read_at for r in rows if r.slot == kill_slot and r.read_at > killed_at]
    if late:  # empty only if c0 had finished its part of the slot in 0.3 s
        reclaim = lease / 4
        assert max(late) - killed_at < timedelta(seconds=lease + reclaim + 1.5)
    # no readout was done twice: at most the one c0 was in the middle of when it died
    stored = Counter(r.meter for r in rows)
    assert all(sent[name] - stored[name] in (0, 1) for name in names)
    assert sum(sent[name] - stored[name] for name in names) <= meters // 2


@pytest.mark.slow
def test_sigkill_on_sqlite_mid_write_then_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    meters = 100
    with EmulatorThread(meters=meters, transport="tcp", speed=200.0, delay=0.02) as emu:
        config = write_config(
            tmp_path / "k.toml",
            url,
            emu.ports,
            'interval = "1s"\nbatch_size = 3\nflush_interval = 0.01\n',
        )
        log = tmp_path / "c.log"
        for delay in (2.5, 1.7, 2.1):  # writes go on all the time; kill three times
            proc = start_collector(config, log)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL

        path = tmp_path / "readings.sqlite"
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        with open_storage(url) as storage:
            rows = list(storage.readings())
            attempts = list(storage.attempts())
        assert len(rows) > meters
        assert all(a.ok for a in attempts)
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
