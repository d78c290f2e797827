"""The SQLite backend (stdlib ``sqlite3``): one file, WAL, ordered migrations.

Durability: the database runs in WAL mode and every :meth:`SqliteStorage.record` call is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, so a process killed at any moment (SIGKILL)
leaves either the whole batch or none of it; the file opens again without recovery steps.
``synchronous`` is ``FULL`` by default (the WAL is synced at each commit, so a committed batch
also survives a power cut); ``?synchronous=normal`` trades that last guarantee for speed (still
no half-written rows, but the last commits may be lost on power failure).

Threads: the collector calls the storage from a worker thread, the web app from a thread pool.
The backend keeps one connection (``check_same_thread=False``) for writes and short queries,
serialised by a lock; every streamed read (:meth:`readings`, :meth:`consumption`,
:meth:`attempts`) opens its own read-only connection, which in WAL mode reads a consistent
snapshot without blocking the writer, and closes it when the iterator ends or is closed.

Columns: see :mod:`kamstrup382.storage.columns` (registers as exact integers in units of their
last digit, times as microseconds since the epoch UTC).
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from kamstrup382.errors import StorageError
from kamstrup382.protocol import MeterValues
from kamstrup382.protocol.registers import REGISTERS, RegisterKind
from kamstrup382.storage.base import OUTBOX_LEASE, OutboxItem, Storage, outbox_window
from kamstrup382.storage.columns import (
    REGISTER_COLUMNS,
    consumption_rows,
    from_micros,
    to_micros,
)
from kamstrup382.storage.records import (
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    MeterStatus,
    ReadingRecord,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStorage"]

_T = TypeVar("_T")

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
}
SCHEMA_VERSION = max(MIGRATIONS)

_NUMERIC = tuple((r.name, r.decimals) for r in REGISTERS if r.kind is not RegisterKind.TEXT)
_GET_NUMERIC = operator.attrgetter(*(name for name, _ in _NUMERIC))
_DECIMALS = tuple(decimals for _, decimals in _NUMERIC)
_READING_COLUMNS = (
    "meter",
    "slot",
    "read_at",
    *REGISTER_COLUMNS,
    "identification",
    "type_number",
    "bcc_algorithm",
    "raw",
    "answer_delay",
    "duration",
    "attempts",
)
_SELECT_READING = f"SELECT {', '.join(_READING_COLUMNS)} FROM readings"
_READING_VALUES = f"({', '.join('?' * len(_READING_COLUMNS))})"
_FAILURE_COLUMNS = ("meter", "slot", "failed_at", "kind", "message", "attempts", "duration")
_FAILURE_VALUES = f"({', '.join('?' * len(_FAILURE_COLUMNS))})"
#: Rows per INSERT statement, at most: a batch is written as statements of 256, 64, 16, 4 and
#: 1 rows (few distinct statements for the connection's cache; 256 rows of 18 parameters are far
#: below SQLite's limit of 32,766). One statement per 256 rows instead of one per row: the
#: storage thread gives up and takes back the interpreter's lock once per statement, not once
#: per row, while the event loop's thread is busy with thousands of readouts ending at once.
_ROWS_PER_INSERT = (256, 64, 16, 4, 1)


@functools.cache
def _insert_reading(rows: int) -> str:
    return (
        f"INSERT INTO readings ({', '.join(_READING_COLUMNS)}) "
        f"VALUES {', '.join([_READING_VALUES] * rows)} ON CONFLICT (meter, slot) DO NOTHING"
    )


@functools.cache
def _insert_failure(rows: int) -> str:
    return (
        f"INSERT INTO failures ({', '.join(_FAILURE_COLUMNS)}) "
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


_SELECT_OUTBOX = (
    "SELECT o.id, "
    + ", ".join(f"r.{c}" for c in _READING_COLUMNS)
    + " FROM outbox o JOIN readings r ON r.id = o.reading_id"
)
# meters of the outbox free for a holder (see Storage.outbox_pending), oldest entry first,
# among the meters of the oldest ``window`` entries (-1: all of them)
_FREE_OUTBOX_METERS = (
    "WITH heads AS (SELECT meter, min(id) AS first "
    "FROM (SELECT meter, id FROM outbox ORDER BY id LIMIT ?) GROUP BY meter) "
    "SELECT c.meter FROM outbox_claims c JOIN heads h ON h.meter = c.meter "
    "WHERE c.holder IS NULL OR c.holder = ? OR c.expires_at <= ? "
    "ORDER BY h.first LIMIT ?"
)
_RELEASE_OUTBOX = "UPDATE outbox_claims SET holder = NULL, expires_at = NULL WHERE holder = ?"
_SYNCHRONOUS = ("full", "normal", "extra")
#: Page cache of the writing connection, in KiB (SQLite's default is 2 MiB).
WRITER_CACHE_KIB = 65536


def _reading_row(r: ReadingRecord) -> tuple[Any, ...]:
    v = r.values
    return (
        r.meter,
        to_micros(r.slot),
        to_micros(r.read_at),
        v.customer_number,
        *[
            int(value.scaleb(decimals)) if decimals else int(value)
            for value, decimals in zip(_GET_NUMERIC(v), _DECIMALS, strict=True)
        ],
        r.identification,
        r.type_number,
        str(r.bcc_algorithm),
        bytes(r.raw),
        float(r.answer_delay),
        float(r.duration),
        int(r.attempts),
    )


def _failure_row(f: FailureRecord) -> tuple[Any, ...]:
    return (
        f.meter,
        to_micros(f.slot),
        to_micros(f.failed_at),
        f.kind,
        f.message,
        f.attempts,
        float(f.duration),
    )


def _reading(row: Sequence[Any]) -> ReadingRecord:
    n = len(_NUMERIC)
    numbers = {
        name: Decimal(row[4 + i]).scaleb(-decimals) for i, (name, decimals) in enumerate(_NUMERIC)
    }
    return ReadingRecord(
        meter=row[0],
        slot=from_micros(row[1]),
        read_at=from_micros(row[2]),
        values=MeterValues(customer_number=row[3], **numbers),
        identification=row[4 + n],
        type_number=row[5 + n],
        bcc_algorithm=row[6 + n],
        raw=bytes(row[7 + n]),
        answer_delay=row[8 + n],
        duration=row[9 + n],
        attempts=row[10 + n],
    )


def _where(
    meter: str | None, since: datetime | None, until: datetime | None, at: str
) -> tuple[str, list[Any]]:
    """A WHERE clause for a meter and a half-open time range ``[since, until)`` on ``at``."""
    conditions: list[str] = []
    params: list[Any] = []
    if meter is not None:
        conditions.append("meter = ?")
        params.append(meter)
    if since is not None:
        conditions.append(f"{at} >= ?")
        params.append(to_micros(since))
    if until is not None:
        conditions.append(f"{at} < ?")
        params.append(to_micros(until))
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


class SqliteStorage(Storage):
    """Readings in one SQLite file; see the module documentation for durability and threads."""

    def __init__(self, path: str | Path, *, synchronous: str = "full", url: str | None = None):
        if synchronous.lower() not in _SYNCHRONOUS:
            raise StorageError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.path = Path(path)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self.synchronous = synchronous.upper()
        self._lock = threading.RLock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the directory of {self.path}: {exc}") from exc
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
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return conn

    # -- helpers ---------------------------------------------------------------------------------
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
        """Rows of ``sql`` on a connection of their own, converted one by one."""
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

    # -- life cycle ------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The version of the schema in the file (0: empty)."""

        def read(conn: sqlite3.Connection) -> int:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if exists is None:
                return 0
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            return int(row[0] or 0)

        return self._locked("reading the schema version", read)

    def migrate(self, target: int | None = None) -> None:
        """Apply the missing migrations up to ``target`` (default: the latest), in order."""
        target = SCHEMA_VERSION if target is None else target

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {current}, newer than this program's "
                    f"{SCHEMA_VERSION}: upgrade kamstrup382"
                )
            for version in range(current + 1, target + 1):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

        self._transaction("migrating the schema", run)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # -- writing ---------------------------------------------------------------------------------
    def record(
        self,
        readings: Sequence[ReadingRecord],
        failures: Sequence[FailureRecord] = (),
        *,
        outbox: bool = False,
    ) -> int:
        try:
            reading_rows = [_reading_row(r) for r in readings]
            failure_rows = [_failure_row(f) for f in failures]
        except (AttributeError, TypeError, ValueError, ArithmeticError) as exc:
            raise StorageError(f"cannot store a malformed record: {exc}") from exc

        def run(conn: sqlite3.Connection) -> int:
            last_id = 0
            if outbox:
                last_id = conn.execute("SELECT coalesce(max(id), 0) FROM readings").fetchone()[0]
            new = 0
            if reading_rows:
                new = _insert_all(conn, _insert_reading, reading_rows)
            if failure_rows:
                _insert_all(conn, _insert_failure, failure_rows)
            if outbox and new:
                # rowids of new rows are above every existing one; the write lock is ours
                conn.execute(
                    "INSERT INTO outbox (reading_id, meter) SELECT id, meter FROM readings "
                    "WHERE id > ? ORDER BY id",
                    (last_id,),
                )
                conn.execute(
                    "INSERT OR IGNORE INTO outbox_claims (meter) "
                    "SELECT DISTINCT meter FROM readings WHERE id > ?",
                    (last_id,),
                )
            return int(new)

        return self._transaction("storing readings", run)

    # -- outbox ----------------------------------------------------------------------------------
    def outbox_pending(
        self, limit: int = 100, *, holder: str | None = None, lease: timedelta = OUTBOX_LEASE
    ) -> list[OutboxItem]:
        if holder is None:
            sql = f"{_SELECT_OUTBOX} ORDER BY o.id LIMIT ?"
            rows = self._locked("reading the outbox", lambda c: c.execute(sql, (limit,)).fetchall())
            return [(int(row[0]), _reading(row[1:])) for row in rows]
        if lease <= timedelta(0):
            raise StorageError(f"an outbox lease must be positive, got {lease}")

        def run(conn: sqlite3.Connection) -> list[Any]:
            # BEGIN IMMEDIATE holds the write lock: no other claim runs meanwhile
            now = to_micros(datetime.now(UTC))
            window = outbox_window(limit)
            free = _FREE_OUTBOX_METERS
            meters = [r[0] for r in conn.execute(free, (window, holder, now, limit)).fetchall()]
            if not meters:
                # the oldest entries are all held by others: look further, if there is more
                (more,) = conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT ?)", (window + 1,)
                ).fetchone()
                if more <= window:
                    return []
                meters = [r[0] for r in conn.execute(free, (-1, holder, now, limit)).fetchall()]
                if not meters:
                    return []
            expires = now + lease // timedelta(microseconds=1)
            conn.executemany(
                "UPDATE outbox_claims SET holder = ?, expires_at = ? WHERE meter = ?",
                [(holder, expires, meter) for meter in meters],
            )
            sql = (
                f"{_SELECT_OUTBOX} WHERE o.meter IN (SELECT value FROM json_each(?)) "
                "ORDER BY o.id LIMIT ?"
            )
            return conn.execute(sql, (json.dumps(meters), limit)).fetchall()

        rows = self._transaction("claiming outbox entries", run)
        return [(int(row[0]), _reading(row[1:])) for row in rows]

    def outbox_done(self, ids: Sequence[int], *, holder: str | None = None) -> None:
        if not ids and holder is None:
            return
        params = [(int(i),) for i in ids]

        def run(conn: sqlite3.Connection) -> None:
            if params:
                conn.executemany("DELETE FROM outbox WHERE id = ?", params)
            if holder is not None:
                conn.execute(_RELEASE_OUTBOX, (holder,))

        self._transaction("removing published outbox entries", run)

    def outbox_release(self, holder: str) -> None:
        self._transaction(
            "releasing outbox claims", lambda c: c.execute(_RELEASE_OUTBOX, (holder,))
        )

    def last_bcc_algorithms(self, meters: Sequence[str]) -> dict[str, str]:
        sql = (
            "SELECT value, (SELECT bcc_algorithm FROM readings WHERE meter = value "
            "ORDER BY read_at DESC, id DESC LIMIT 1) FROM json_each(?)"
        )
        names = json.dumps(sorted(set(meters)))
        rows = self._locked(
            "reading the BCC algorithms", lambda c: c.execute(sql, (names,)).fetchall()
        )
        return {meter: algorithm for meter, algorithm in rows if algorithm is not None}

    # -- reading ---------------------------------------------------------------------------------
    def meters(self) -> list[str]:
        sql = "SELECT meter FROM readings UNION SELECT meter FROM failures ORDER BY meter"
        rows = self._locked("listing meters", lambda c: c.execute(sql).fetchall())
        return [row[0] for row in rows]

    def latest(self, meter: str) -> ReadingRecord | None:
        sql = f"{_SELECT_READING} WHERE meter = ? ORDER BY read_at DESC, id DESC LIMIT 1"
        row = self._locked(
            "reading the latest reading", lambda c: c.execute(sql, (meter,)).fetchone()
        )
        return None if row is None else _reading(row)

    def readings(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ReadingRecord]:
        where, params = _where(meter, since, until, "read_at")
        sql = f"{_SELECT_READING}{where} ORDER BY meter, read_at, id"
        return self._stream("reading readings", sql, params, _reading)

    def consumption(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ConsumptionRow]:
        where, params = _where(meter, since, until, "read_at")
        sql = (
            f"SELECT meter, read_at, energy, tariff_1, tariff_2 FROM readings{where} "
            "ORDER BY meter, read_at, id"
        )

        def convert(row: Any) -> tuple[str, datetime, Decimal, Decimal, Decimal]:
            return (row[0], from_micros(row[1]), Decimal(row[2]), Decimal(row[3]), Decimal(row[4]))

        return consumption_rows(self._stream("reading consumption", sql, params, convert))

    def attempts(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[AttemptRecord]:
        rwhere, rparams = _where(meter, since, until, "read_at")
        fwhere, fparams = _where(meter, since, until, "failed_at")
        sql = (
            "SELECT meter, slot, read_at AS at, 1 AS ok, duration, attempts, NULL AS kind "
            f"FROM readings{rwhere} UNION ALL "
            "SELECT meter, slot, failed_at AS at, 0 AS ok, duration, attempts, kind "
            f"FROM failures{fwhere} ORDER BY at, meter"
        )

        def convert(row: Any) -> AttemptRecord:
            return AttemptRecord(
                meter=row[0],
                slot=from_micros(row[1]),
                at=from_micros(row[2]),
                ok=bool(row[3]),
                duration=row[4],
                attempts=row[5],
                kind=row[6],
            )

        return self._stream("reading attempts", sql, [*rparams, *fparams], convert)

    def status(self) -> list[MeterStatus]:
        def run(conn: sqlite3.Connection) -> list[MeterStatus]:
            ok = {
                m: (n, last)
                for m, n, last in conn.execute(
                    "SELECT meter, count(*), max(read_at) FROM readings GROUP BY meter"
                )
            }
            # SQLite: bare columns of an aggregate query come from the row holding the max
            bad = {
                m: (n, last, kind, message)
                for m, n, last, kind, message in conn.execute(
                    "SELECT meter, count(*), max(failed_at), kind, message FROM failures "
                    "GROUP BY meter"
                )
            }
            result = []
            for m in sorted(ok.keys() | bad.keys()):
                successes, last_ok = ok.get(m, (0, None))
                failures, last_bad, kind, message = bad.get(m, (0, None, None, None))
                result.append(
                    MeterStatus(
                        meter=m,
                        last_success=None if last_ok is None else from_micros(last_ok),
                        last_error=None if last_bad is None else from_micros(last_bad),
                        last_error_kind=kind,
                        last_error_message=message,
                        successes=successes,
                        failures=failures,
                    )
                )
            return result

        return self._locked("reading the status", run)
