"""The SQLite backend (stdlib ``sqlite3``): one file, WAL, ordered migrations.

Durability: the database runs in WAL mode and every :meth:`SqliteStorage.record` call is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, so a process killed at any moment (SIGKILL)
leaves either the whole batch or none of it; the file opens again without recovery steps.
``synchronous`` is ``FULL`` by default (the WAL is synced at each commit, so a committed batch
also survives a power cut); ``?synchronous=normal`` trades that last guarantee for speed (still
no half-written rows, but the last commits may be lost on power failure).

A full disk (or ``max_page_count`` reached): the transaction fails (``database or disk is
full``) and is rolled back; nothing of it is half-stored, the collector keeps it and spills it.
A commit that fits in the WAL but whose checkpoint finds no room in the database file is still
committed: the checkpoint fails quietly, the WAL keeps the rows (and grows) until a checkpoint
succeeds, and a connection opened later reads them from it. Nothing here removes a WAL.

Files: the database and its directory, when created here, are owner-only (0600 / 0700; SQLite
creates ``-wal`` and ``-shm`` with the database's mode); an existing file keeps its mode.

Threads: the collector calls the storage from a worker thread, the web app from a thread pool.
The backend keeps one connection (``check_same_thread=False``) for writes and short queries,
serialised by a lock; every streamed read (:meth:`readings`, :meth:`consumption`,
:meth:`attempts`) opens its own read-only connection, which in WAL mode reads a consistent
snapshot without blocking the writer, and closes it when the iterator ends or is closed.

Columns: see :mod:`kamstrup382.storage.columns` (registers as exact integers in units of their
last digit, times as microseconds since the epoch UTC) and :mod:`kamstrup382.storage.rows`
(a KMP reading's registers as the text of their digits). The queries shared with PostgreSQL are
in :mod:`kamstrup382.storage.sql`; this module keeps the file, its connections, the schema's
SQLite types and the multi-row inserts of a batch.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from kamstrup382.errors import StorageError
from kamstrup382.storage.base import outbox_names
from kamstrup382.storage.columns import to_micros
from kamstrup382.storage.dialect import SQLITE
from kamstrup382.storage.files import create_private_file, make_private_dir
from kamstrup382.storage.records import AnyReading, FailureRecord
from kamstrup382.storage.rows import (
    FAILURE_COLUMNS,
    KMP_COLUMNS,
    KMP_REGISTER_COLUMNS,
    READING_COLUMNS,
)
from kamstrup382.storage.sql import SqlStorage

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStorage"]

_T = TypeVar("_T")

_COUNTER_MAX = 9999999
#: The columns of the readings table up to version 8, which migration 9 carries over.
_V5_COLUMNS = (
    "id, meter, slot, read_at, customer_number, energy, tariff_1, tariff_2, hour_counter, "
    "pulse_input, actual_peak, last_month_peak, identification, type_number, bcc_algorithm, "
    "raw, answer_delay, duration, attempts"
)

#: Ordered migrations: version -> statements that bring version - 1 to version. Never edit a
#: released step; add a new one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE readings (
            id INTEGER PRIMARY KEY,
            meter TEXT NOT NULL,
            slot INTEGER NOT NULL,
            read_at INTEGER NOT NULL,
            customer_number TEXT NOT NULL CHECK (length(customer_number) = 8),
            energy INTEGER NOT NULL CHECK (energy BETWEEN 0 AND 9999999),
            tariff_1 INTEGER NOT NULL CHECK (tariff_1 BETWEEN 0 AND 9999999),
            tariff_2 INTEGER NOT NULL CHECK (tariff_2 BETWEEN 0 AND 9999999),
            hour_counter INTEGER NOT NULL CHECK (hour_counter BETWEEN 0 AND 9999999),
            pulse_input INTEGER NOT NULL CHECK (pulse_input BETWEEN 0 AND 9999999),
            actual_peak INTEGER NOT NULL CHECK (actual_peak BETWEEN 0 AND 9999999),
            last_month_peak INTEGER NOT NULL CHECK (last_month_peak BETWEEN 0 AND 9999999),
            identification TEXT NOT NULL,
            type_number TEXT,
            bcc_algorithm TEXT NOT NULL,
            raw BLOB NOT NULL,
            answer_delay REAL NOT NULL,
            duration REAL NOT NULL,
            attempts INTEGER NOT NULL,
            UNIQUE (meter, slot)
        ) STRICT""",
        "CREATE INDEX readings_meter_read_at ON readings (meter, read_at)",
        """CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            meter TEXT NOT NULL,
            slot INTEGER NOT NULL,
            failed_at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            duration REAL NOT NULL,
            UNIQUE (meter, slot, failed_at)
        ) STRICT""",
    ),
    2: (
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            reading_id INTEGER NOT NULL REFERENCES readings (id) ON DELETE CASCADE
        ) STRICT""",
    ),
    3: (
        "CREATE INDEX readings_read_at ON readings (read_at)",
        "CREATE INDEX failures_meter_failed_at ON failures (meter, failed_at)",
        "CREATE INDEX failures_failed_at ON failures (failed_at)",
    ),
    # the outbox shared by many publishers: claims per meter (see Storage.outbox_pending)
    4: (
        "ALTER TABLE outbox ADD COLUMN meter TEXT NOT NULL DEFAULT ''",
        "UPDATE outbox SET meter = (SELECT r.meter FROM readings r WHERE r.id = outbox.reading_id)",
        "CREATE INDEX outbox_meter_id ON outbox (meter, id)",
        """CREATE TABLE outbox_claims (
            meter TEXT PRIMARY KEY,
            holder TEXT,
            expires_at INTEGER
        ) STRICT""",
        "INSERT INTO outbox_claims (meter) SELECT DISTINCT meter FROM outbox",
    ),
    # a failed readout keeps the bytes it was refused for (an implausible telegram)
    5: ("ALTER TABLE failures ADD COLUMN raw BLOB",),
    # what each output announced (Home Assistant devices), to clear the ones no longer
    # configured (see storage/announcements.py)
    6: (
        """CREATE TABLE announced (
            output TEXT NOT NULL,
            device TEXT NOT NULL,
            holder TEXT NOT NULL,
            meter TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (output, device, holder)
        ) STRICT""",
    ),
    # one queue per output (MQTT, InfluxDB): entries and claims per (output, meter); what was
    # queued before belongs to MQTT, the only output that had a queue
    7: (
        "ALTER TABLE outbox ADD COLUMN output TEXT NOT NULL DEFAULT 'mqtt'",
        "DROP INDEX outbox_meter_id",
        "CREATE INDEX outbox_output_id ON outbox (output, id)",
        "CREATE INDEX outbox_output_meter_id ON outbox (output, meter, id)",
        """CREATE TABLE outbox_claims_7 (
            output TEXT NOT NULL,
            meter TEXT NOT NULL,
            holder TEXT,
            expires_at INTEGER,
            PRIMARY KEY (output, meter)
        ) STRICT""",
        "INSERT INTO outbox_claims_7 (output, meter, holder, expires_at) "
        "SELECT 'mqtt', meter, holder, expires_at FROM outbox_claims",
        "DROP TABLE outbox_claims",
        "ALTER TABLE outbox_claims_7 RENAME TO outbox_claims",
    ),
    # pin 3's pulses: per-minute power and each meter's live figure (storage/power_table.py)
    8: (
        """CREATE TABLE power_minutes (
            meter TEXT NOT NULL,
            minute INTEGER NOT NULL,
            pulses INTEGER NOT NULL,
            mean_w REAL NOT NULL,
            min_w REAL,
            max_w REAL,
            PRIMARY KEY (meter, minute)
        ) STRICT""",
        "CREATE INDEX power_minutes_minute ON power_minutes (minute)",
        """CREATE TABLE power_live (
            meter TEXT PRIMARY KEY,
            at INTEGER NOT NULL,
            watts REAL,
            energy TEXT,
            pulses INTEGER NOT NULL,
            connected INTEGER NOT NULL
        ) STRICT""",
    ),
    # every dialect in one table (the 382C): tariffs 3 and 4, NULL where the meter has none;
    # last month's peak NULL where it has none (never 0); the actual peak in thousandths of a
    # kW (the 382C prints three decimals). SQLite changes no column's constraints in place:
    # the table is rebuilt, in the migration's one transaction. Dropping the old table deletes
    # the outbox's rows (ON DELETE CASCADE): they are kept aside and put back, same ids.
    9: (
        f"""CREATE TABLE readings_v9 (
            id INTEGER PRIMARY KEY,
            meter TEXT NOT NULL,
            slot INTEGER NOT NULL,
            read_at INTEGER NOT NULL,
            customer_number TEXT NOT NULL CHECK (length(customer_number) = 8),
            energy INTEGER NOT NULL CHECK (energy BETWEEN 0 AND {_COUNTER_MAX}),
            tariff_1 INTEGER NOT NULL CHECK (tariff_1 BETWEEN 0 AND {_COUNTER_MAX}),
            tariff_2 INTEGER NOT NULL CHECK (tariff_2 BETWEEN 0 AND {_COUNTER_MAX}),
            tariff_3 INTEGER CHECK (tariff_3 BETWEEN 0 AND {_COUNTER_MAX}),
            tariff_4 INTEGER CHECK (tariff_4 BETWEEN 0 AND {_COUNTER_MAX}),
            hour_counter INTEGER NOT NULL CHECK (hour_counter BETWEEN 0 AND {_COUNTER_MAX}),
            pulse_input INTEGER NOT NULL CHECK (pulse_input BETWEEN 0 AND {_COUNTER_MAX}),
            actual_peak INTEGER NOT NULL CHECK (actual_peak BETWEEN 0 AND 999999999),
            last_month_peak INTEGER CHECK (last_month_peak BETWEEN 0 AND 9999999),
            identification TEXT NOT NULL,
            type_number TEXT,
            bcc_algorithm TEXT NOT NULL,
            raw BLOB NOT NULL,
            answer_delay REAL NOT NULL,
            duration REAL NOT NULL,
            attempts INTEGER NOT NULL,
            UNIQUE (meter, slot)
        ) STRICT""",
        f"INSERT INTO readings_v9 ({_V5_COLUMNS}) "
        f"SELECT {_V5_COLUMNS.replace('actual_peak', 'actual_peak * 100')} FROM readings",
        "CREATE TEMP TABLE outbox_v9 AS SELECT id, reading_id, meter, output FROM outbox",
        "DROP TABLE readings",
        "ALTER TABLE readings_v9 RENAME TO readings",
        "INSERT INTO outbox (id, reading_id, meter, output) "
        "SELECT id, reading_id, meter, output FROM outbox_v9",
        "DROP TABLE outbox_v9",
        "CREATE INDEX readings_meter_read_at ON readings (meter, read_at)",
        "CREATE INDEX readings_read_at ON readings (read_at)",
    ),
    # KMP readings (382J, Jx3, Lx7, M): a table of their own, one TEXT column per register of
    # the 382 set holding the value's digits, NULL where the meter sent none; what "auto"
    # found per meter; the outbox points at a reading of either table (exactly one). SQLite
    # changes no NOT NULL in place: the outbox is rebuilt with its ids and its AUTOINCREMENT
    # counter (an id published and removed is never handed out again).
    10: (
        f"""CREATE TABLE kmp_readings (
            id INTEGER PRIMARY KEY,
            meter TEXT NOT NULL,
            slot INTEGER NOT NULL,
            read_at INTEGER NOT NULL,
            meter_type INTEGER NOT NULL,
            software_revision TEXT NOT NULL,
            serial INTEGER NOT NULL,
            {" ".join(f"{name} TEXT," for name in KMP_REGISTER_COLUMNS)}
            duration REAL NOT NULL,
            exchanges INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            UNIQUE (meter, slot)
        ) STRICT""",
        "CREATE INDEX kmp_readings_meter_read_at ON kmp_readings (meter, read_at)",
        "CREATE INDEX kmp_readings_read_at ON kmp_readings (read_at)",
        """CREATE TABLE meter_protocols (
            meter TEXT PRIMARY KEY,
            protocol TEXT NOT NULL CHECK (protocol IN ('iec', 'kmp')),
            baud INTEGER CHECK (baud > 0),
            found_at INTEGER NOT NULL
        ) STRICT""",
        """CREATE TABLE outbox_v10 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            reading_id INTEGER REFERENCES readings (id) ON DELETE CASCADE,
            kmp_reading_id INTEGER REFERENCES kmp_readings (id) ON DELETE CASCADE,
            meter TEXT NOT NULL,
            output TEXT NOT NULL,
            CHECK ((reading_id IS NULL) <> (kmp_reading_id IS NULL))
        ) STRICT""",
        "INSERT INTO sqlite_sequence (name, seq) "
        "SELECT 'outbox_v10', seq FROM sqlite_sequence WHERE name = 'outbox'",
        "INSERT INTO outbox_v10 (id, reading_id, meter, output) "
        "SELECT id, reading_id, meter, output FROM outbox",
        "DROP TABLE outbox",
        "ALTER TABLE outbox_v10 RENAME TO outbox",
        "CREATE INDEX outbox_output_id ON outbox (output, id)",
        "CREATE INDEX outbox_output_meter_id ON outbox (output, meter, id)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

_READING_VALUES = f"({', '.join('?' * len(READING_COLUMNS))})"
_FAILURE_VALUES = f"({', '.join('?' * len(FAILURE_COLUMNS))})"
_KMP_VALUES = f"({', '.join('?' * len(KMP_COLUMNS))})"
#: Rows per INSERT statement, at most: a batch is written as statements of 256, 64, 16, 4 and
#: 1 rows (few distinct statements for the connection's cache; 256 rows of 20 parameters are far
#: below SQLite's limit of 32,766). One statement per 256 rows instead of one per row: the
#: storage thread gives up and takes back the interpreter's lock once per statement, not once
#: per row, while the event loop's thread is busy with thousands of readouts ending at once.
_ROWS_PER_INSERT = (256, 64, 16, 4, 1)


@functools.cache
def _insert_reading(rows: int) -> str:
    return (
        f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) "
        f"VALUES {', '.join([_READING_VALUES] * rows)} ON CONFLICT (meter, slot) DO NOTHING"
    )


@functools.cache
def _insert_kmp(rows: int) -> str:
    return (
        f"INSERT INTO kmp_readings ({', '.join(KMP_COLUMNS)}) "
        f"VALUES {', '.join([_KMP_VALUES] * rows)} ON CONFLICT (meter, slot) DO NOTHING"
    )


@functools.cache
def _insert_failure(rows: int) -> str:
    return (
        f"INSERT INTO failures ({', '.join(FAILURE_COLUMNS)}) "
        f"VALUES {', '.join([_FAILURE_VALUES] * rows)} "
        "ON CONFLICT (meter, slot, failed_at) DO NOTHING"
    )


def _insert_all(
    conn: sqlite3.Connection, statement: Callable[[int], str], rows: Sequence[tuple[Any, ...]]
) -> int:
    """Insert ``rows`` in a few multi-row statements; the number of rows inserted."""
    inserted = 0
    start = 0
    for size in _ROWS_PER_INSERT:
        count = (len(rows) - start) // size
        if not count:
            continue
        sql = statement(size)
        for _ in range(count):
            chunk = rows[start : start + size]
            start += size
            params = [value for row in chunk for value in row]
            inserted += conn.execute(sql, params).rowcount
    return inserted


# meters of an output's queue free for a holder (see Storage.outbox_pending), oldest entry
# first, among the meters of its oldest ``window`` entries (-1: all of them)
_FREE_OUTBOX_METERS = (
    "WITH heads AS (SELECT meter, min(id) AS first "
    "FROM (SELECT meter, id FROM outbox WHERE output = ?1 ORDER BY id LIMIT ?2) GROUP BY meter) "
    "SELECT c.meter FROM outbox_claims c JOIN heads h ON h.meter = c.meter "
    "WHERE c.output = ?1 AND (c.holder IS NULL OR c.holder = ?3 OR c.expires_at <= ?4) "
    "ORDER BY h.first LIMIT ?5"
)
#: The outbox's column that points at a row of each readings table.
_OUTBOX_COLUMN = {"readings": "reading_id", "kmp_readings": "kmp_reading_id"}
_SYNCHRONOUS = ("full", "normal", "extra")
#: Page cache of the writing connection, in KiB (SQLite's default is 2 MiB).
WRITER_CACHE_KIB = 65536


class SqliteStorage(SqlStorage[sqlite3.Connection]):
    """Readings in one SQLite file; see the module documentation for durability and threads."""

    dialect = SQLITE
    migrations = MIGRATIONS

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "full",
        max_page_count: int | None = None,
        url: str | None = None,
    ):
        if synchronous.lower() not in _SYNCHRONOUS:
            raise StorageError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.path = Path(path)
        self.max_page_count = max_page_count
        self.location = str(self.path)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self.synchronous = synchronous.upper()
        self._lock = threading.RLock()
        self._closed = False
        try:  # owner-only when created here (SQLite gives -wal and -shm the file's mode)
            make_private_dir(self.path.parent)
        except OSError as exc:
            raise StorageError(f"cannot create the directory of {self.path}: {exc}") from exc
        try:
            create_private_file(self.path)
        except OSError as exc:
            raise StorageError(f"cannot create SQLite database {self.path}: {exc}") from exc
        self._conn = self._connect()

    def _connect(self, *, read_only: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            if read_only:
                conn.execute("PRAGMA query_only=ON")
            else:
                # the writer touches one index page per meter and slot: keep them in memory
                conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
                if self.max_page_count is not None:
                    conn.execute(f"PRAGMA max_page_count={int(self.max_page_count)}").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return conn

    # -- the connection --------------------------------------------------------------------------
    def _locked(self, what: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise StorageError(f"{what}: the storage {self.url} is closed")
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise StorageError(f"{what} failed in {self.path}: {exc}") from exc

    def _transaction(self, what: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def run(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.rollback()
                raise
            conn.execute("COMMIT")
            return result

        return self._locked(what, run)

    def _stream(
        self, what: str, sql: str, params: Sequence[Any], convert: Callable[[Any], _T]
    ) -> Iterator[_T]:
        """Rows of ``sql`` on a read-only connection of their own, converted one by one."""
        if self._closed:
            raise StorageError(f"{what}: the storage {self.url} is closed")
        conn = self._connect(read_only=True)
        try:
            cursor = conn.execute(sql, params)
            while True:
                rows = cursor.fetchmany(1000)
                if not rows:
                    break
                for row in rows:
                    yield convert(row)
        except sqlite3.Error as exc:
            raise StorageError(f"{what} failed in {self.path}: {exc}") from exc
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # -- writing ---------------------------------------------------------------------------------
    def record(
        self,
        readings: Sequence[AnyReading],
        failures: Sequence[FailureRecord] = (),
        *,
        outbox: Sequence[str] | bool = (),
    ) -> int:
        reading_rows, kmp_rows, failure_rows = self.rows(readings, failures)
        queued = outbox_names(outbox)
        queues = SQLITE.list_param(queued)

        def insert(
            conn: sqlite3.Connection,
            table: str,
            statement: Callable[[int], str],
            rows: Sequence[tuple[Any, ...]],
        ) -> int:
            """Insert ``rows`` into ``table``, queueing the new ones; how many were new."""
            if not rows:
                return 0
            last_id = 0
            if queued:
                last_id = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
            new = _insert_all(conn, statement, rows)
            if queued and new:
                # rowids of new rows are above every existing one; the write lock is ours
                column = _OUTBOX_COLUMN[table]
                conn.execute(
                    f"INSERT INTO outbox ({column}, meter, output) "
                    f"SELECT r.id, r.meter, o.value FROM {table} r, json_each(?) o "
                    "WHERE r.id > ? ORDER BY r.id, o.key",
                    (queues, last_id),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO outbox_claims (output, meter) "
                    f"SELECT DISTINCT o.value, r.meter FROM {table} r, json_each(?) o "
                    "WHERE r.id > ?",
                    (queues, last_id),
                )
            return new

        def run(conn: sqlite3.Connection) -> int:
            new = insert(conn, "readings", _insert_reading, reading_rows)
            new += insert(conn, "kmp_readings", _insert_kmp, kmp_rows)
            if failure_rows:
                _insert_all(conn, _insert_failure, failure_rows)
            return int(new)

        return self._transaction("storing readings", run)

    def _claim_outbox(
        self,
        conn: sqlite3.Connection,
        output: str,
        holder: str,
        *,
        limit: int,
        lease: timedelta,
        window: int | None,
    ) -> list[str]:
        # inside BEGIN IMMEDIATE: the write lock is ours, no other claim runs meanwhile
        now = to_micros(datetime.now(UTC))
        params = (output, -1 if window is None else window, holder, now, limit)
        meters = [row[0] for row in conn.execute(_FREE_OUTBOX_METERS, params).fetchall()]
        expires = now + lease // timedelta(microseconds=1)
        conn.executemany(
            "UPDATE outbox_claims SET holder = ?, expires_at = ? WHERE output = ? AND meter = ?",
            [(holder, expires, output, meter) for meter in meters],
        )
        return meters
