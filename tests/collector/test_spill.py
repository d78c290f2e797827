"""The spill journal and the writer's use of it, against real SQLite (and PostgreSQL where the
behaviour does not depend on the backend).

What is tested: results round-trip through the journal exactly (Decimal text, raw bytes, times
with their offset) into either backend; the file is owner-only and fsynced whole per append;
a torn last line is skipped with a warning and the next append does not glue onto it; a line
that is not a record is kept aside; a storage that refuses the replay leaves the journal as it
was; replaying twice stores each result once; a journal that cannot be written is an error.
The writer, with a SQLite database that is full (``max_page_count``): closing spills what
was refused after ``retries``, a bounded drain does too, memory stays bounded while the storage
keeps failing (past ``max_pending`` it spills without waiting for a close), and once the
storage takes a batch again the journal is stored and emptied.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.collector.spill import SpillJournal, decode_line, encode_record
from kamstrup382.collector.writer import BatchWriter
from kamstrup382.emulator import EmulatorThread
from kamstrup382.errors import StorageError
from kamstrup382.storage import FailureRecord, ReadingRecord, Storage
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config
from tests.fixtures.postgres import PostgresServer
from tests.protocol.test_properties import meter_values
from tests.storage.full import FILLER, full_sqlite
from tests.storage.samples import failure, reading

#: A guard against a hung writer, not a speed requirement.
PATIENCE = 20.0
LOGGER = "kamstrup382.collector"


def results(count: int, meter: str = "m") -> list[ReadingRecord | FailureRecord]:
    """``count`` results of ``meter``: readings, every third one a failure."""
    return [failure(meter, i) if i % 3 == 2 else reading(meter, i) for i in range(count)]


def split(
    records: list[ReadingRecord | FailureRecord],
) -> tuple[list[ReadingRecord], list[FailureRecord]]:
    return (
        [r for r in records if isinstance(r, ReadingRecord)],
        [r for r in records if isinstance(r, FailureRecord)],
    )


def stored(storage: Storage) -> tuple[list[ReadingRecord], list[tuple[str, object, str]]]:
    """Readings stored, and the failures (meter, slot, kind) in the attempts log."""
    failures = [(a.meter, a.slot, a.kind or "") for a in storage.attempts() if not a.ok]
    return list(storage.readings()), failures


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - a poll of another component's state
        await asyncio.sleep(0.005)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="k382-storage") as pool:
        yield pool


# -- the journal ------------------------------------------------------------------------------


def test_results_round_trip_exactly_through_the_journal_into_the_storage(
    storage_url: str, tmp_path: Path
) -> None:
    records = results(7)
    readings, failures = split(records)
    journal = SpillJournal(tmp_path / "state" / "deep" / "spill.jsonl")
    assert journal.append(readings[:2], failures[:1]) == 3
    assert journal.append(readings[2:], failures[1:]) == 4
    mode = stat.S_IMODE
    assert mode(journal.path.stat().st_mode) == 0o600
    assert mode(journal.path.parent.stat().st_mode) == 0o700
    assert mode((tmp_path / "state").stat().st_mode) == 0o700
    lines = journal.path.read_text(encoding="ascii").splitlines()
    assert len(lines) == 7 == journal.count()
    first = json.loads(lines[0])
    assert first["values"]["actual_peak"] == "12.3"  # exact decimal text
    assert first["raw"] == readings[0].raw.hex()
    assert first["slot"] == "2026-03-01T00:00:00+00:00"
    assert [decode_line(line) for line in lines] == [*readings[:2], failures[0], *readings[2:],
                                                      *failures[1:]]  # fmt: skip
    with open_storage(storage_url) as storage:
        assert journal.replay(storage) == 7
        got_readings, got_failures = stored(storage)
    assert got_readings == readings
    assert got_failures == [(f.meter, f.slot, f.kind) for f in failures]
    assert not journal.path.exists()
    assert journal.count() == 0


def test_replaying_twice_stores_each_result_once(storage_url: str, tmp_path: Path) -> None:
    readings, failures = split(results(6))
    journal = SpillJournal(tmp_path / "spill.jsonl")
    with open_storage(storage_url) as storage:
        storage.record(readings[:2], failures[:1])  # some were stored before they were spilled
        journal.append(readings, failures)
        journal.append(readings[:1], [])  # and one twice
        assert journal.replay(storage) == 7
        got_readings, got_failures = stored(storage)
    assert got_readings == readings
    assert len(got_failures) == len(failures)


def test_a_torn_last_line_is_skipped_with_a_warning_and_the_next_append_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    readings, _ = split(results(6))  # four readings
    journal = SpillJournal(tmp_path / "spill.jsonl")
    journal.append(readings[:2], [])
    whole = journal.path.read_bytes()
    torn = encode_record(readings[2]).encode("ascii")[:57]  # killed while appending
    journal.path.write_bytes(whole + torn)
    with open_storage(f"sqlite:///{tmp_path / 'a.sqlite'}") as storage:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert journal.replay(storage) == 2
        assert list(storage.readings()) == readings[:2]
    (warning,) = caplog.records
    assert "torn last line 3 (57 bytes" in warning.getMessage()
    assert not journal.path.exists()

    # torn again, then an append: the new record is a line of its own, not glued to the tear
    journal.path.write_bytes(whole + torn)
    journal.append([readings[3]], [])
    appended = encode_record(readings[3]).encode("ascii") + b"\n"
    assert journal.path.read_bytes() == whole + torn + b"\n" + appended
    caplog.clear()
    with open_storage(f"sqlite:///{tmp_path / 'b.sqlite'}") as storage:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert journal.replay(storage) == 3
        assert list(storage.readings()) == [*readings[:2], readings[3]]
    (warning,) = caplog.records
    assert "line 3 is not a record" in warning.getMessage()  # the tear, now inside
    assert journal.path.with_name("spill.jsonl.rejected").read_bytes() == torn + b"\n"


def test_a_storage_that_refuses_the_replay_leaves_the_journal_as_it_was(tmp_path: Path) -> None:
    readings, failures = split(results(1200))  # more than one replay batch
    journal = SpillJournal(tmp_path / "spill.jsonl")
    journal.append(readings, failures)
    before = journal.path.read_bytes()
    full = open_storage(full_sqlite(tmp_path / "full.sqlite"))
    with full as storage, pytest.raises(StorageError, match="database or disk is full"):
        journal.replay(storage)
    assert journal.path.read_bytes() == before
    with open_storage(f"sqlite:///{tmp_path / 'full.sqlite'}") as storage:  # room again
        assert journal.replay(storage) == 1200
        assert list(storage.readings(meter="m")) == readings
    assert not journal.path.exists()


def test_a_journal_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    journal = SpillJournal(tmp_path / "file" / "spill.jsonl")
    with pytest.raises(StorageError, match=r"cannot write the spill journal .*file/spill\.jsonl"):
        journal.append([reading()], [])


def test_a_line_that_is_not_a_record_is_an_error_of_its_own() -> None:
    line = encode_record(reading())
    for bad in (
        "{}",
        "[1]",
        line.replace('"v":1', '"v":2'),
        line.replace('"type":"reading"', '"type":"other"'),
        line.replace('"energy":"', '"energy":"x'),
        line.replace('+00:00"', '"', 1),  # a time without its offset
        line.replace(',"raw":', ',"raw_":'),  # a field missing
        "[" * 100_000 + "]" * 100_000,  # nested beyond the parser's recursion
    ):
        with pytest.raises((ValueError, TypeError)):
            decode_line(bad)


# -- the writer, with a database that is full -------------------------------------------------


async def test_close_spills_what_a_full_database_refused_after_its_retries(
    tmp_path: Path, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    journal = SpillJournal(tmp_path / "spill.jsonl")
    records = results(5)
    with open_storage(full_sqlite(tmp_path / "r.sqlite")) as storage:
        writer = BatchWriter(
            storage, [], executor, batch_size=2, retry_delay=0.01, retries=2, spill=journal
        )
        writer.start()
        for record in records:
            writer.put(record)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            await asyncio.wait_for(writer.close(), PATIENCE)
    assert (writer.stored, writer.spilled, writer.spilled_readings, writer.lost) == (0, 5, 4, 0)
    spilled = [r for r in caplog.records if "spilled to" in r.getMessage()]
    assert spilled[0].getMessage() == (
        f"2 results not stored after 3 tries: spilled to {journal.path} "
        "(stored at the next start, or once the storage takes a batch)"
    )
    with open_storage(f"sqlite:///{tmp_path / 'r.sqlite'}") as storage:  # room again
        assert journal.replay(storage) == 5
        assert list(storage.readings(meter="m")) == split(records)[0]


async def test_memory_stays_bounded_while_storage_fails_and_the_journal_is_stored_after(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    """Not closing: past ``max_pending`` results waiting, the oldest batches are spilled; when
    rows are deleted (room again), the next batch is stored and the journal with it."""
    path = tmp_path / "r.sqlite"
    journal = SpillJournal(tmp_path / "spill.jsonl")
    with open_storage(full_sqlite(path)) as storage:
        writer = BatchWriter(
            storage, [], executor, batch_size=2, retry_delay=0.01, max_pending=6, spill=journal
        )
        writer.start()
        try:
            records = results(40)
            for record in records:
                writer.put(record)
                await asyncio.sleep(0.002)
            await asyncio.wait_for(until(lambda: writer.spilled >= 34), PATIENCE)
            assert journal.count() == writer.spilled
            with sqlite3.connect(path) as conn:
                conn.execute("DELETE FROM readings WHERE meter = ?", (FILLER,))
            conn.close()
            for record in results(4, meter="after"):
                writer.put(record)
            await asyncio.wait_for(writer.drain(), PATIENCE)
            assert journal.count() == 0
            assert writer.spilled == 0
        finally:
            await asyncio.wait_for(writer.close(), PATIENCE)
        readings = [r for r in storage.readings() if r.meter != FILLER]
    assert readings == sorted(
        split(records)[0] + split(results(4, meter="after"))[0], key=lambda r: (r.meter, r.read_at)
    )


def test_the_journal_file_mode_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        journal = SpillJournal(tmp_path / "new" / "spill.jsonl")
        journal.append([reading()], [])
    finally:
        os.umask(old)
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(journal.path.parent.stat().st_mode) == 0o700


async def test_an_earlier_runs_journal_refused_at_start_is_stored_once_the_storage_recovers(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    path = tmp_path / "r.sqlite"
    journal = SpillJournal(tmp_path / "spill.jsonl")
    earlier = results(5, meter="earlier")
    journal.append(*split(earlier))
    with open_storage(full_sqlite(path)) as storage:
        writer = BatchWriter(storage, [], executor, batch_size=2, retry_delay=0.01, spill=journal)
        writer.start()
        try:
            assert await writer.replay() is None  # full: kept
            assert journal.count() == 5
            with sqlite3.connect(path) as conn:
                conn.execute("DELETE FROM readings WHERE meter = ?", (FILLER,))
            conn.close()
            writer.put(reading("now", 0))
            await asyncio.wait_for(writer.drain(), PATIENCE)
            assert journal.count() == 0
        finally:
            await asyncio.wait_for(writer.close(), PATIENCE)
        assert [r.meter for r in storage.readings()] == ["earlier"] * 4 + ["now"]
    assert (writer.spilled, writer.lost) == (0, 0)


def _set_read_only(server: PostgresServer, database: str, *, read_only: bool) -> None:
    """New sessions of ``database`` refuse writes (or take them again), and the open ones end:
    PostgreSQL's own ``cannot execute INSERT in a read-only transaction``."""
    setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} " + setting).format(sql.Identifier(database)))
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )


@pytest.mark.postgres
async def test_postgres_refusing_writes_spills_into_the_state_dir_and_the_next_start_stores(
    postgres_server: PostgresServer, postgres_db_url: str, tmp_path: Path
) -> None:
    """The database refuses writes while the meters it let this collector claim are read (a
    readout takes about 0.6 s at speed 10). The journal of a PostgreSQL storage is in
    ``storage.spill_dir`` (not beside a file); the storage's connection, ended by the server,
    is opened again for the next write."""
    database = postgres_db_url.rsplit("/", 1)[1]
    state = tmp_path / "state"
    with EmulatorThread(meters=2, transport="tcp", speed=10, delay=0.02) as emu:
        config = make_config(postgres_db_url, emu.ports, interval=60, answer_timeout=2)
        config = replace(
            config, storage=replace(config.storage, retries=1, retry_delay=0.02, spill_dir=state)
        )
        with open_storage(postgres_db_url) as storage:
            async with Collector(config, storage) as collector:
                cycle = asyncio.create_task(collector.run_once())
                await asyncio.wait_for(until(lambda: all(emu.log(i) for i in range(2))), 20)
                await asyncio.to_thread(_set_read_only, postgres_server, database, read_only=True)
                result = await cycle
            assert len(result.readings) == 2
            assert (collector.unstored, collector.unstored_readings, collector.lost) == (2, 2, 0)
            (journal,) = state.iterdir()
            assert journal == collector.spill.path
            assert journal.name.startswith("postgresql-")
            assert stat.S_IMODE(journal.stat().st_mode) == 0o600
            assert list(storage.readings()) == []

            _set_read_only(postgres_server, database, read_only=False)
            # the next start, a slot later: its first call finds the session ended, so the
            # journal waits for the first batch stored (on a new connection)
            later = ManualClock(result.readings[0].slot + timedelta(minutes=1))
            async with Collector(config, storage, clock=later) as again:
                await again.run_once()
            assert not journal.exists()
            assert again.unstored == 0
            stored = list(storage.readings())
    assert set(result.readings) <= set(stored)
    assert len(stored) == 4


async def test_closing_takes_one_batchs_retries_not_every_batchs(
    tmp_path: Path, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    """100 batches queued for a full database: the first gets its retries, the 99 after it one
    try each, then go to the journal (0.05 s between tries: 100 batches' retries took 15 s)."""
    journal = SpillJournal(tmp_path / "spill.jsonl")
    records = results(200)
    with open_storage(full_sqlite(tmp_path / "r.sqlite")) as storage:
        writer = BatchWriter(
            storage, [], executor, batch_size=2, retry_delay=0.05, retries=3, spill=journal
        )
        writer.start()
        for record in records:
            writer.put(record)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            await asyncio.wait_for(writer.close(), PATIENCE)
        took = time.monotonic() - start
    assert took < 3.0
    assert (writer.spilled, writer.lost) == (200, 0)
    assert journal.count() == 200
    spilled = [r.getMessage() for r in caplog.records if "spilled to" in r.getMessage()]
    assert spilled[0].startswith("2 results not stored after 4 tries")
    assert all(m.startswith("2 results not stored after 1 try:") for m in spilled[1:])
    assert len(spilled) == 100


def _records_alive() -> int:
    gc.collect()
    return sum(isinstance(o, ReadingRecord | FailureRecord) for o in gc.get_objects())


async def test_results_held_while_the_storage_fails_stay_within_max_pending(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    """2,000 results put one by one (none kept by the test) into a full database with
    ``max_pending`` 50: the records alive in the process stay near 50, whatever was put.
    (Each failed batch's future used to keep the batch before it, through its traceback, and
    each warning logged the error itself, which a handler keeping records kept.)"""
    journal = SpillJournal(tmp_path / "spill.jsonl")
    with open_storage(full_sqlite(tmp_path / "r.sqlite")) as storage:
        writer = BatchWriter(
            storage, [], executor, batch_size=10, retry_delay=0.01, max_pending=50, spill=journal
        )
        writer.start()
        before = _records_alive()
        alive = []
        try:
            for index in range(2000):
                writer.put(reading("m", index) if index % 3 else failure("m", index))
                if index % 10 == 9:
                    await asyncio.sleep(0.002)
                    # a few batches ahead of the journal at most: what the writer keeps is the
                    # question here, not a disk slower than the puts (an fsync per batch)
                    deadline = time.monotonic() + PATIENCE
                    while index + 1 - writer.spilled > 200 and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.005)
                if index % 500 == 499:
                    alive.append(_records_alive() - before)
        finally:
            await asyncio.wait_for(writer.close(), PATIENCE)
    # max_pending, and what is put during one try (none of the 2,000 used to be let go)
    assert max(alive) <= 500, alive
    assert journal.count() == 2000


async def test_when_the_journal_cannot_be_written_either_the_results_are_counted_lost(
    tmp_path: Path, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("not a directory")
    journal = SpillJournal(tmp_path / "file" / "spill.jsonl")
    with open_storage(full_sqlite(tmp_path / "r.sqlite")) as storage:
        writer = BatchWriter(
            storage, [], executor, batch_size=2, retry_delay=0.01, retries=1, spill=journal
        )
        writer.start()
        for record in results(4):  # two batches, each with a reading (no room for one)
            writer.put(record)
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            await asyncio.wait_for(writer.close(), PATIENCE)
    assert (writer.stored, writer.spilled, writer.lost) == (0, 0, 4)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("results not stored and not spilled: lost (cannot write" in m for m in errors)


_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)
_floats = st.floats(allow_nan=False, allow_infinity=False)
_readings = st.builds(
    ReadingRecord,
    meter=st.text(min_size=1, max_size=20),
    slot=_times,
    read_at=_times,
    values=meter_values,
    identification=st.text(max_size=40),
    type_number=st.none() | st.text(max_size=20),
    bcc_algorithm=st.sampled_from(["sum7", "xor"]),
    raw=st.binary(max_size=300),
    answer_delay=_floats,
    duration=_floats,
    attempts=st.integers(0, 2**40),
)
_failures = st.builds(
    FailureRecord,
    meter=st.text(min_size=1, max_size=20),
    slot=_times,
    failed_at=_times,
    kind=st.text(max_size=20),
    message=st.text(max_size=200),
    attempts=st.integers(0, 100),
    duration=_floats,
)


@given(st.one_of(_readings, _failures))
def test_every_record_round_trips_exactly_through_one_journal_line(
    record: ReadingRecord | FailureRecord,
) -> None:
    line = encode_record(record)
    assert "\n" not in line and line.isascii()
    assert decode_line(line) == record


def test_an_implausible_failure_keeps_its_raw_bytes_through_the_journal(tmp_path: Path) -> None:
    """A telegram stored as a failed attempt (kind ``implausible``) carries the bytes the meter
    sent; spilled and loaded again, it still does."""
    failure = FailureRecord(
        meter="house",
        slot=datetime(2026, 3, 1, tzinfo=UTC),
        failed_at=datetime(2026, 3, 1, 0, 0, 7, tzinfo=UTC),
        kind="implausible",
        message="implausible: sum: energy 0000053 kWh is not tariff 1 + tariff 2",
        attempts=3,
        duration=17.5,
        raw=b"/KAM 685-382-OK-15\r\n\x02...\x03>",
    )
    assert decode_line(encode_record(failure)) == failure
    journal = SpillJournal(tmp_path / "r.sqlite.spill.jsonl")
    journal.append([], [failure])
    with open_storage(f"sqlite:///{tmp_path / 'r.sqlite'}") as storage:
        assert journal.replay(storage) == 1
        (stored,) = list(storage.failures())
    assert stored.raw == failure.raw
