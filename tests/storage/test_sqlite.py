"""What only the SQLite backend does: the file, its pragmas, a writer killed mid-batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from kamstrup382.errors import StorageError
from kamstrup382.protocol import MeterValues
from kamstrup382.storage import FailureRecord, ReadingRecord, Storage
from kamstrup382.storage.columns import REGISTER_COLUMNS, from_micros
from kamstrup382.storage.sqlite import (
    _ROWS_PER_INSERT,
    _insert_all,
    _insert_failure,
    _insert_reading,
)
from kamstrup382.storage.url import open_storage
from tests.storage.samples import START, failure, reading

BATCH = 2000


def test_wal_and_synchronous(tmp_path: Path) -> None:
    with open_storage(f"sqlite:///{tmp_path / 'a.sqlite'}") as storage:
        storage.record([reading()])
    conn = sqlite3.connect(tmp_path / "a.sqlite")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # registers are exact integers: kWh as they are, the actual peak in thousandths of a
        # kW (the 382C prints three decimals), last month's in tenths; no tariffs 3 and 4
        row = conn.execute(
            "SELECT energy, actual_peak, typeof(actual_peak), last_month_peak, tariff_3, "
            "tariff_4 FROM readings"
        ).fetchone()
        assert row[:3] == (1500, 12300, "integer")
        assert row[4:] == (None, None)
    finally:
        conn.close()


def test_a_single_process_claims_every_meter(tmp_path: Path) -> None:
    with open_storage(f"sqlite:///{tmp_path / 'x.sqlite'}") as storage:
        lease = timedelta(minutes=1)
        assert storage.claim("a", ["m2", "m1", "m2"], START, lease) == ["m2", "m1"]
        storage.record([], [failure("m1", 0)])
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


# -- multi-row INSERTs: batches cut into statements of 256, 64, 16, 4 and 1 rows ---------------
# Every field of these records differs from one index to the next, so a row whose parameters
# slipped by one column, or a chunk written twice, skipped or swapped, shows in the comparison.

CHUNKED_SIZES = (0, 1, 3, 4, 5, 17, 255, 256, 257, 341, 1000)
METERS = 7


def _varied(i: int, *, duration: float | None = None) -> ReadingRecord:
    """The ``i``-th reading of a batch over :data:`METERS` meters, every field unique."""
    base = reading(f"m{i % METERS}", i)
    return replace(
        base,
        values=MeterValues(
            customer_number=f"{i:08d}",
            energy=Decimal(i * 11),
            tariff_1=Decimal(i * 7),
            tariff_2=Decimal(i * 4),
            hour_counter=Decimal(i * 3),
            pulse_input=Decimal(9_999_999 - i),
            actual_peak=Decimal(i).scaleb(-1),
            last_month_peak=Decimal(100_000 + i).scaleb(-1),
        ),
        identification=f"KAM 685-382-OK-15 #{i}",
        type_number=None if i % 5 == 0 else f"685-382-OK-{i % 100:02d}",
        bcc_algorithm=("sum7", "xor")[i % 2],
        raw=f"/KAM5 {i}\r\n\x02".encode() + bytes([i % 128]) + b"\x03",
        answer_delay=0.0375 + i / 1e6,
        duration=4.0 + i / 7 if duration is None else duration,
        attempts=1 + i % 3,
    )


def _key(r: ReadingRecord) -> tuple[str, datetime]:
    return r.meter, r.slot


def _stored_order(path: Path) -> list[tuple[str, datetime]]:
    """(meter, slot) of the rows of ``readings``, in the order they were inserted."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT meter, slot FROM readings ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(meter, from_micros(slot)) for meter, slot in rows]


def _stored_failures(path: Path) -> list[FailureRecord]:
    """The rows of ``failures``, in the order they were inserted."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT meter, slot, failed_at, kind, message, attempts, duration FROM failures "
            "ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [
        FailureRecord(
            meter=meter,
            slot=from_micros(slot),
            failed_at=from_micros(failed_at),
            kind=kind,
            message=message,
            attempts=attempts,
            duration=duration,
        )
        for meter, slot, failed_at, kind, message, attempts, duration in rows
    ]


def _varied_failure(i: int, *, later: bool = False, message: str | None = None) -> FailureRecord:
    """The ``i``-th failure of a batch, every field unique; ``later``: another attempt at the
    same slot (a different ``failed_at``, so a different key)."""
    base = failure(f"m{i % METERS}", i, kind=("timeout", "bcc", "parity")[i % 3])
    return replace(
        base,
        failed_at=base.failed_at + timedelta(microseconds=i, seconds=30 if later else 0),
        message=f"failure #{i}" if message is None else message,
        attempts=i % 4,
        duration=0.5 + i / 3,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chunks.sqlite"


@pytest.fixture
def store(db_path: Path) -> Iterator[Storage]:
    with open_storage(f"sqlite:///{db_path}") as storage:
        yield storage


@pytest.mark.parametrize("size", CHUNKED_SIZES)
def test_chunked_insert_stores_every_reading_once_and_exactly(
    store: Storage, db_path: Path, size: int
) -> None:
    batch = [_varied(i) for i in range(size)]
    assert store.record(batch) == size
    back = list(store.readings())
    assert len(back) == size
    assert sorted(back, key=_key) == sorted(batch, key=_key)
    # rows are inserted in the order of the batch (the outbox relies on it)
    assert _stored_order(db_path) == [_key(r) for r in batch]
    assert sum(s.successes for s in store.status()) == size
    # a second time: nothing new, nothing doubled
    assert store.record(batch) == 0
    assert len(list(store.readings())) == size


@pytest.mark.parametrize("size", CHUNKED_SIZES)
def test_chunked_insert_after_existing_rows(store: Storage, size: int) -> None:
    """Rows already there before the batch: the count and the contents are only the batch's."""
    before = [_varied(i) for i in range(1000, 1003)]
    assert store.record(before) == 3
    batch = [_varied(i) for i in range(size)]
    assert store.record(batch) == size
    assert sorted(store.readings(), key=_key) == sorted(before + batch, key=_key)


def test_chunk_decomposition_of_insert_all() -> None:
    """Every row once, in order, in statements of the sizes of ``_ROWS_PER_INSERT`` (largest
    first), whatever the length of the batch."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    statements: list[str] = []

    def statement(rows: int) -> str:
        values = ", ".join(["(?, ?)"] * rows)
        return f"INSERT INTO t (a, b) VALUES {values} ON CONFLICT (a) DO NOTHING"

    try:
        # the largest statement binds fewer parameters than this SQLite allows
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        assert max(_ROWS_PER_INSERT) * _insert_reading(1).count("?") <= limit
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER UNIQUE, b TEXT)")
        conn.set_trace_callback(statements.append)
        for n in (*range(0, 70), 255, 256, 257, 320, 336, 340, 341, 342, 512, 600, 1000):
            conn.execute("DELETE FROM t")
            statements.clear()
            rows = [(i, f"row {i}") for i in range(n)]
            assert _insert_all(conn, statement, rows) == n
            # rows per statement (the trace shows the statements with their values bound)
            sizes = [
                s.partition(" VALUES ")[2].partition(" ON CONFLICT ")[0].count("(")
                for s in statements
            ]
            assert conn.execute("SELECT a, b FROM t ORDER BY id").fetchall() == rows
            expected: list[int] = []
            rest = n
            for size in _ROWS_PER_INSERT:
                expected += [size] * (rest // size)
                rest %= size
            assert sizes == expected, n
    finally:
        conn.close()
    # and the real statements take as many rows as they say
    for size in _ROWS_PER_INSERT:
        assert _insert_reading(size).count("?") == size * 20
        assert _insert_failure(size).count("?") == size * 8  # with the raw bytes


def test_duplicates_across_chunk_boundaries_keep_the_first_version(
    store: Storage, db_path: Path
) -> None:
    first = [_varied(i) for i in range(300)]
    assert store.record(first) == 300
    # the same 300 (another duration: not the key) interleaved with 300 new ones
    again = [_varied(i, duration=99.5) for i in range(300)]
    new = [_varied(i) for i in range(300, 600)]
    batch = [r for pair in zip(new, again, strict=True) for r in pair]
    assert store.record(batch) == 300
    back = sorted(store.readings(), key=_key)
    assert len(back) == 600
    assert back == sorted(first + new, key=_key)
    assert all(r.duration != 99.5 for r in back)
    assert _stored_order(db_path) == [_key(r) for r in first + new]


def test_duplicates_inside_one_batch_keep_the_first_occurrence(store: Storage) -> None:
    """A reading repeated in the same batch, in the same chunk or in a later one: stored once,
    as it came first."""
    firsts = [_varied(i) for i in range(334)]
    repeats = [_varied(i, duration=-1.0) for i in (0, 1, 3, 255, 256, 300, 333)]
    # 341 rows: the repeat of #0 in the first statement (256 rows) with its original, the
    # others after every original, in the statements of 16, 4 and 1 rows
    batch = [*firsts[:2], repeats[0], *firsts[2:], *repeats[1:]]
    assert len(batch) == 341
    assert store.record(batch) == 334
    assert sorted(store.readings(), key=_key) == sorted(firsts, key=_key)


@pytest.mark.parametrize("size", (1, 257, 1000))
def test_chunked_failures_are_stored_once_and_exactly(
    store: Storage, db_path: Path, size: int
) -> None:
    fails = [_varied_failure(i) for i in range(size)]
    assert store.record([], fails) == 0  # the count is of new readings only
    assert _stored_failures(db_path) == fails
    assert sum(s.failures for s in store.status()) == size
    # the same keys again (another message: not the key) with as many new ones, interleaved:
    # the new ones are added, the first versions kept
    repeated = [_varied_failure(i, message="changed") for i in range(size)]
    later = [_varied_failure(i, later=True) for i in range(size)]
    assert store.record([], [f for pair in zip(later, repeated, strict=True) for f in pair]) == 0
    assert _stored_failures(db_path) == fails + later
    assert sum(s.failures for s in store.status()) == 2 * size
    assert sum(1 for a in store.attempts() if not a.ok) == 2 * size


def test_chunked_readings_and_failures_in_one_batch(store: Storage, db_path: Path) -> None:
    readings = [_varied(i) for i in range(341)]
    fails = [_varied_failure(i) for i in range(341, 682)]
    assert store.record(readings, fails) == 341
    assert sorted(store.readings(), key=_key) == sorted(readings, key=_key)
    assert _stored_failures(db_path) == fails


def _over_range() -> MeterValues:
    """Values the database refuses (energy has 7 digits): MeterValues refuses to hold them, so
    a stand-in with the same attributes carries them."""
    values = {name: getattr(_varied(0).values, name) for name in REGISTER_COLUMNS}
    return SimpleNamespace(**{**values, "energy": Decimal(10**7)})  # type: ignore[return-value]


def _bad_reading(how: str, i: int) -> ReadingRecord:
    good = _varied(i)
    if how == "check":  # refused by a CHECK constraint of the table
        return replace(good, values=_over_range())
    if how == "not null":  # refused by a NOT NULL constraint
        return replace(good, meter=None)  # type: ignore[arg-type]
    if how == "conversion":  # refused while building the rows, before the transaction
        return replace(good, values=None)  # type: ignore[arg-type]
    if how == "slot":
        return replace(good, slot="2026-03-01")  # type: ignore[arg-type]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ("check", "not null", "conversion", "slot"))
@pytest.mark.parametrize(
    ("size", "bad"),
    # #300 (in the 64-row statement after a first one of 256), the very last row of a batch
    # of 341 (its 1-row statement after all the others) and the first row of a batch
    ((600, 299), (341, 340), (341, 0)),
)
def test_a_malformed_reading_in_a_chunked_batch_stores_nothing(
    store: Storage, db_path: Path, how: str, size: int, bad: int
) -> None:
    before = [_varied(i) for i in range(1000, 1010)]
    store.record(before, outbox=True)
    batch = [_varied(i) for i in range(size)]
    batch[bad] = _bad_reading(how, bad)
    with pytest.raises(StorageError) as info:
        store.record(batch, [_varied_failure(i) for i in range(300)], outbox=True)
    assert info.value.__cause__ is not None
    assert sorted(store.readings(), key=_key) == sorted(before, key=_key)
    assert _stored_failures(db_path) == []
    assert [r for _, r in store.outbox_pending(1000)] == before
    # the storage is usable afterwards, and the batch without its bad record goes in whole
    del batch[bad]
    assert store.record(batch) == size - 1
    assert len(list(store.readings())) == len(before) + size - 1


@pytest.mark.parametrize("bad", (0, 299, 340))
def test_a_malformed_failure_in_a_chunked_batch_stores_nothing(
    store: Storage, db_path: Path, bad: int
) -> None:
    readings = [_varied(i) for i in range(341)]
    fails = [_varied_failure(i) for i in range(341)]
    fails[bad] = replace(fails[bad], message=None)  # type: ignore[arg-type]
    with pytest.raises(StorageError) as info:
        store.record(readings, fails, outbox=True)
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert list(store.readings()) == []
    assert _stored_failures(db_path) == []
    assert store.outbox_pending() == []


@pytest.mark.parametrize("queued_before", (False, True))
def test_outbox_queues_exactly_the_new_readings_of_a_chunked_batch(
    store: Storage, queued_before: bool
) -> None:
    old = [_varied(i) for i in range(0, 300, 3)]  # 100 readings stored before
    assert store.record(old, outbox=queued_before) == 100
    # 300 readings, every third one a duplicate (another duration), spread over the chunks
    batch = [_varied(i, duration=-2.0) if i % 3 == 0 else _varied(i) for i in range(300)]
    new = [r for i, r in enumerate(batch) if i % 3]
    assert store.record(batch, outbox=True) == 200
    pending = store.outbox_pending(1000)
    expected = (old if queued_before else []) + new
    assert [r for _, r in pending] == expected  # each once, in the order of the batch
    ids = [i for i, _ in pending]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # the claims cover every meter of the new readings
    claimed = store.outbox_pending(1000, holder="a", lease=timedelta(minutes=1))
    assert [r for _, r in claimed] == expected
    assert {r.meter for _, r in claimed} == {f"m{i}" for i in range(METERS)}
    store.outbox_done([i for i, _ in claimed], holder="a")
    assert store.outbox_pending() == []
    assert len(list(store.readings())) == 300


# -- the files: owner-only when created, a full disk ---------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_database_and_its_directories_are_owner_only_whatever_the_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "deeper" / "r.sqlite"
    tmp_path.chmod(0o755)
    old = os.umask(0)  # the modes are the code's, not the umask's
    try:
        with open_storage(f"sqlite:///{path}") as storage:
            storage.record([reading()])
            wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
            assert (_mode(path), _mode(wal), _mode(shm)) == (0o600, 0o600, 0o600)
    finally:
        os.umask(old)
    assert _mode(path.parent) == _mode(path.parent.parent) == 0o700
    assert _mode(tmp_path) == 0o755  # a directory that existed is left alone


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    open_storage(f"sqlite:///{path}").close()
    path.chmod(0o640)  # the owner chose to share it with a group
    with open_storage(f"sqlite:///{path}") as storage:
        storage.record([reading()])
        assert _mode(Path(f"{path}-wal")) == 0o640  # SQLite follows the database's mode
    assert _mode(path) == 0o640


def test_max_page_count_makes_a_write_that_needs_more_room_fail_whole(tmp_path: Path) -> None:
    """``?max_page_count=N``: SQLite's SQLITE_FULL, the error of a full disk; the batch that
    does not fit is rolled back whole, what was stored before stays, and it opens again."""
    url = f"sqlite:///{tmp_path / 'capped.sqlite'}?max_page_count=40"
    with open_storage(url) as storage:
        stored = 0
        with pytest.raises(StorageError, match="database or disk is full"):
            for start in range(0, 10_000, 100):  # bounded: 40 pages hold far fewer
                storage.record([reading("m", i) for i in range(start, start + 100)])
                stored += 100
        assert 0 < stored < 10_000
        assert len(list(storage.readings())) == stored  # whole batches only
    with open_storage(f"sqlite:///{tmp_path / 'capped.sqlite'}") as storage:  # no cap: room
        storage.record([reading("m", 10_000)])
        assert len(list(storage.readings())) == stored + 1


_FULL_DISK_WRITER = """
import os, resource, signal, sys
from kamstrup382.errors import StorageError
from kamstrup382.storage.url import open_storage
from tests.storage.samples import reading

path, limit = sys.argv[1], int(sys.argv[2])
# a disk with no room beyond `limit` bytes in any file: writes past it are short or fail
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
committed = 0
with open_storage(f"sqlite:///{path}") as storage:
    for batch in range(10_000):
        try:
            storage.record([reading("m", batch * 20 + i) for i in range(20)])
        except StorageError as exc:
            print("refused:", exc, file=sys.stderr)
            break
        committed += 20
    sizes = [os.path.getsize(path + suffix) for suffix in ("", "-wal")]
print(committed, *sizes)
"""


def test_a_full_disk_that_leaves_no_room_for_the_wal_checkpoint_loses_no_committed_reading(
    tmp_path: Path,
) -> None:
    """A writer whose files may not grow beyond 6 MiB (``RLIMIT_FSIZE``: the database file and
    the WAL meet the limit as they would a full disk): the WAL's checkpoints copy pages into the
    database file until it is full; then the checkpoints fail (quietly, the commits succeed and
    the WAL grows, holding the rows) until the WAL is full too and a commit is refused (the
    collector spills that batch). Every reading committed is in the database opened later, and
    the WAL is still there after the writer closed (the last checkpoint failed)."""
    path = tmp_path / "full.sqlite"
    limit = 6 * 1024 * 1024
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_WRITER, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    committed, size, wal_size = map(int, done.stdout.split())
    assert "refused: storing readings failed" in done.stderr
    assert size == limit  # the database file could take no more pages
    assert wal_size > 0  # rows committed after the last checkpoint that fitted
    assert Path(f"{path}-wal").stat().st_size > 0  # close could not checkpoint it either
    with open_storage(f"sqlite:///{path}") as storage:
        readings = list(storage.readings())
    assert len(readings) == committed > 0
    assert readings == [reading("m", i) for i in range(committed)]
