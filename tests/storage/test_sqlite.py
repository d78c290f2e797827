"""What only the SQLite backend does: the file, its pragmas, a writer killed mid-batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

from kamstrup382.storage.url import open_storage
from tests.storage.samples import START, reading

BATCH = 2000


def test_wal_and_synchronous(tmp_path: Path) -> None:
    with open_storage(f"sqlite:///{tmp_path / 'a.sqlite'}") as storage:
        storage.record([reading()])
    conn = sqlite3.connect(tmp_path / "a.sqlite")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # registers are exact integers: kWh as they are, the peak in tenths of a kW
        row = conn.execute(
            "SELECT energy, actual_peak, typeof(actual_peak) FROM readings"
        ).fetchone()
        assert row == (1500, 123, "integer")
    finally:
        conn.close()


def test_a_single_process_claims_every_meter(tmp_path: Path) -> None:
    with open_storage(f"sqlite:///{tmp_path / 'x.sqlite'}") as storage:
        lease = timedelta(minutes=1)
        assert storage.claim("a", ["m2", "m1", "m2"], START, lease) == ["m2", "m1"]
        storage.complete("a", ["m1"], START)
        storage.release("a", ["m2"], START)
        assert storage.claim("b", ["m1", "m2"], START, lease) == ["m1", "m2"]


WRITER = textwrap.dedent(
    """
    import sys
    from kamstrup382.storage.url import open_storage
    from tests.storage.samples import reading

    storage = open_storage(sys.argv[1])
    batch, prefix = int(sys.argv[2]), sys.argv[3]
    n = 0
    while True:
        storage.record([reading(f"{prefix}{n}", i) for i in range(batch)], outbox=True)
        n += 1
        print(n, flush=True)
    """
)


def _kill_writer(path: Path, prefix: str, delay: float) -> None:
    """Run a writer of ``BATCH``-reading transactions; SIGKILL it ``delay`` s after 3 commits."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "src")])}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, f"sqlite:///{path}", str(BATCH), prefix],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if int(line) >= 3:
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)  # the writer is in a later batch by now
        proc.wait()
        proc.stdout.read()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_batch_leaves_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    # killed at different moments of a batch (building it, inside the transaction, committing)
    for round_, delay in enumerate((0.0, 0.015, 0.03, 0.045)):
        _kill_writer(path, f"r{round_}m", delay)
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            counts = conn.execute("SELECT meter, count(*) FROM readings GROUP BY meter").fetchall()
            outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        finally:
            conn.close()
        assert len(counts) >= 3 * (round_ + 1)
        assert {n for _, n in counts} == {BATCH}  # whole batches only
        assert outbox == BATCH * len(counts)
    with open_storage(f"sqlite:///{path}") as storage:  # opens and writes again
        assert storage.record([reading("after", 0)]) == 1
