"""The PostgreSQL backend (psycopg 3): shared by many collectors, with leases.

Registers are ``NUMERIC(digits + decimals, decimals)``, times ``timestamptz``, the raw
telegram ``bytea``. Writes are one transaction per :meth:`PostgresStorage.record`, sent as
arrays (``unnest``) in one statement per table, idempotent with ``ON CONFLICT DO NOTHING``.

Threads: one connection for writes and short queries, serialised by a lock; every streamed read
opens a connection of its own and reads through a server-side cursor (constant memory),
closing it when the iterator ends or is closed.

Leases: see the protocol on :class:`~kamstrup382.storage.base.Storage` and :meth:`claim`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import psycopg

from kamstrup382.errors import StorageError
from kamstrup382.protocol import MeterValues
from kamstrup382.storage.base import OUTBOX_LEASE, OutboxItem, Storage, outbox_window
from kamstrup382.storage.columns import REGISTER_COLUMNS, aware, consumption_rows
from kamstrup382.storage.records import (
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    MeterStatus,
    ReadingRecord,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStorage"]

_T = TypeVar("_T")

#: Ordered migrations: version -> statements that bring version - 1 to version (same versions
#: as the SQLite backend). Never edit a released step; add a new one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE readings (
            id BIGSERIAL PRIMARY KEY,
            meter TEXT NOT NULL,
            slot TIMESTAMPTZ NOT NULL,
            read_at TIMESTAMPTZ NOT NULL,
            customer_number TEXT NOT NULL CHECK (length(customer_number) = 8),
            energy NUMERIC(7, 0) NOT NULL CHECK (energy >= 0),
            tariff_1 NUMERIC(7, 0) NOT NULL CHECK (tariff_1 >= 0),
            tariff_2 NUMERIC(7, 0) NOT NULL CHECK (tariff_2 >= 0),
            hour_counter NUMERIC(7, 0) NOT NULL CHECK (hour_counter >= 0),
            pulse_input NUMERIC(7, 0) NOT NULL CHECK (pulse_input >= 0),
            actual_peak NUMERIC(7, 1) NOT NULL CHECK (actual_peak >= 0),
            last_month_peak NUMERIC(7, 1) NOT NULL CHECK (last_month_peak >= 0),
            identification TEXT NOT NULL,
            type_number TEXT,
            bcc_algorithm TEXT NOT NULL,
            raw BYTEA NOT NULL,
            answer_delay DOUBLE PRECISION NOT NULL,
            duration DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL,
            UNIQUE (meter, slot)
        )""",
        "CREATE INDEX readings_meter_read_at ON readings (meter, read_at)",
        """CREATE TABLE failures (
            id BIGSERIAL PRIMARY KEY,
            meter TEXT NOT NULL,
            slot TIMESTAMPTZ NOT NULL,
            failed_at TIMESTAMPTZ NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            duration DOUBLE PRECISION NOT NULL,
            UNIQUE (meter, slot, failed_at)
        )""",
    ),
    2: (
        """CREATE TABLE outbox (
            id BIGSERIAL PRIMARY KEY,
            reading_id BIGINT NOT NULL REFERENCES readings (id) ON DELETE CASCADE
        )""",
    ),
    3: (
        "CREATE INDEX readings_read_at ON readings (read_at)",
        "CREATE INDEX failures_meter_failed_at ON failures (meter, failed_at)",
        "CREATE INDEX failures_failed_at ON failures (failed_at)",
        """CREATE TABLE leases (
            meter TEXT PRIMARY KEY,
            slot TIMESTAMPTZ,
            holder TEXT,
            expires_at TIMESTAMPTZ,
            done BOOLEAN NOT NULL DEFAULT false
        )""",
    ),
    # the outbox shared by many publishers: claims per meter (see Storage.outbox_pending)
    4: (
        "ALTER TABLE outbox ADD COLUMN meter TEXT",
        "UPDATE outbox o SET meter = r.meter FROM readings r WHERE r.id = o.reading_id",
        "ALTER TABLE outbox ALTER COLUMN meter SET NOT NULL",
        "CREATE INDEX outbox_meter_id ON outbox (meter, id)",
        """CREATE TABLE outbox_claims (
            meter TEXT PRIMARY KEY,
            holder TEXT,
            expires_at TIMESTAMPTZ
        )""",
        "INSERT INTO outbox_claims (meter) SELECT DISTINCT meter FROM outbox ORDER BY 1",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

#: Key of the advisory lock that serialises migrations of concurrent collectors.
_MIGRATION_LOCK = 382_000_001

_READING_TYPES = (
    ("meter", "text"),
    ("slot", "timestamptz"),
    ("read_at", "timestamptz"),
    ("customer_number", "text"),
    *((name, "numeric") for name in REGISTER_COLUMNS[1:]),
    ("identification", "text"),
    ("type_number", "text"),
    ("bcc_algorithm", "text"),
    ("raw", "bytea"),
    ("answer_delay", "float8"),
    ("duration", "float8"),
    ("attempts", "int4"),
)
_READING_COLUMNS = tuple(name for name, _ in _READING_TYPES)
_COLUMN_LIST = ", ".join(_READING_COLUMNS)
_SELECT_READING = f"SELECT {_COLUMN_LIST} FROM readings"
_UNNEST_READINGS = ", ".join(f"%b::{t}[]" for _, t in _READING_TYPES)
_INSERT_READINGS = (
    f"INSERT INTO readings ({_COLUMN_LIST}) SELECT * FROM unnest({_UNNEST_READINGS}) "
    "ON CONFLICT (meter, slot) DO NOTHING RETURNING id, meter"
)
_INSERT_FAILURES = (
    "INSERT INTO failures (meter, slot, failed_at, kind, message, attempts, duration) "
    "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[], "
    "%s::text[], %s::int4[], %s::float8[]) ON CONFLICT (meter, slot, failed_at) DO NOTHING"
)
# locks the lease rows in meter order (no deadlock between two writers), then marks them done
_COMPLETE = (
    "WITH d AS (SELECT * FROM unnest(%s::text[], %s::timestamptz[]) AS d (meter, slot)), "
    "t AS (SELECT l.meter FROM leases l JOIN d ON l.meter = d.meter AND l.slot = d.slot "
    "WHERE NOT l.done ORDER BY l.meter FOR UPDATE OF l) "
    "UPDATE leases SET done = true FROM t WHERE leases.meter = t.meter"
)
_CLAIM = """
WITH free AS (
    SELECT l.meter FROM leases l
    WHERE l.meter = ANY(%(meters)s)
      AND (
        l.slot IS NULL OR l.slot < %(slot)s
        OR (l.slot = %(slot)s AND NOT l.done AND (l.holder = %(me)s OR l.expires_at <= now()))
      )
      AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter = l.meter AND r.slot = %(slot)s)
    ORDER BY l.meter
    FOR UPDATE OF l SKIP LOCKED
)
UPDATE leases l SET slot = %(slot)s, holder = %(me)s, expires_at = now() + %(lease)s, done = false
FROM free WHERE l.meter = free.meter
RETURNING l.meter
"""
# meters of the outbox free for ``me`` (see Storage.outbox_pending), oldest entry first, among
# the meters of the oldest ``window`` entries (NULL: all of them)
_CLAIM_OUTBOX = """
WITH heads AS (
    SELECT w.meter, min(w.id) AS first
    FROM (SELECT meter, id FROM outbox ORDER BY id LIMIT %(window)s) w
    GROUP BY w.meter
), free AS (
    SELECT c.meter FROM outbox_claims c JOIN heads h ON h.meter = c.meter
    WHERE c.holder IS NULL OR c.holder = %(me)s OR c.expires_at <= now()
    ORDER BY h.first
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE outbox_claims c SET holder = %(me)s, expires_at = now() + %(lease)s
FROM free WHERE c.meter = free.meter
RETURNING c.meter
"""
_RELEASE_OUTBOX = "UPDATE outbox_claims SET holder = NULL, expires_at = NULL WHERE holder = %s"
_SELECT_OUTBOX = (
    "SELECT o.id, "
    + ", ".join(f"r.{c}" for c in _READING_COLUMNS)
    + " FROM outbox o JOIN readings r ON r.id = o.reading_id"
)


def _reading(row: Sequence[Any]) -> ReadingRecord:
    n = len(REGISTER_COLUMNS)
    return ReadingRecord(
        meter=row[0],
        slot=row[1],
        read_at=row[2],
        values=MeterValues(**dict(zip(REGISTER_COLUMNS, row[3 : 3 + n], strict=True))),
        identification=row[3 + n],
        type_number=row[4 + n],
        bcc_algorithm=row[5 + n],
        raw=bytes(row[6 + n]),
        answer_delay=row[7 + n],
        duration=row[8 + n],
        attempts=row[9 + n],
    )


def _where(
    meter: str | None, since: datetime | None, until: datetime | None, at: str
) -> tuple[str, list[Any]]:
    """A WHERE clause for a meter and a half-open time range ``[since, until)`` on ``at``."""
    conditions: list[str] = []
    params: list[Any] = []
    if meter is not None:
        conditions.append("meter = %s")
        params.append(meter)
    if since is not None:
        conditions.append(f"{at} >= %s")
        params.append(aware(since))
    if until is not None:
        conditions.append(f"{at} < %s")
        params.append(aware(until))
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


class PostgresStorage(Storage):
    """Readings in a PostgreSQL database at ``url`` (a libpq connection URL)."""

    shares_meters = True

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._closed = False
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url, autocommit=True, options="-c timezone=UTC", connect_timeout=30
            )
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc

    # -- helpers ---------------------------------------------------------------------------------
    def _locked(self, what: str, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise StorageError(f"{what}: the storage is closed")
            try:
                return fn(self._conn)
            except psycopg.Error as exc:
                raise StorageError(f"{what} failed in PostgreSQL: {exc}") from exc

    def _transaction(self, what: str, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        def run(conn: psycopg.Connection[Any]) -> _T:
            with conn.transaction():
                return fn(conn)

        return self._locked(what, run)

    def _stream(
        self, what: str, sql: str, params: Sequence[Any], convert: Callable[[Any], _T]
    ) -> Iterator[_T]:
        """Rows of ``sql`` through a server-side cursor on a connection of its own."""
        if self._closed:
            raise StorageError(f"{what}: the storage is closed")
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor(name="k382_stream") as cursor:
                cursor.itersize = 2000
                cursor.execute(sql, params)
                for row in cursor:
                    yield convert(row)
        except psycopg.Error as exc:
            raise StorageError(f"{what} failed in PostgreSQL: {exc}") from exc
        finally:
            conn.close()

    # -- life cycle ------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The version of the schema in the database (0: empty)."""

        def read(conn: psycopg.Connection[Any]) -> int:
            exists = conn.execute("SELECT to_regclass('schema_version')").fetchone()
            if exists is None or exists[0] is None:
                return 0
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            return int(row[0] or 0) if row else 0

        return self._locked("reading the schema version", read)

    def migrate(self, target: int | None = None) -> None:
        """Apply the missing migrations up to ``target`` (default: the latest), in order.

        Concurrent collectors migrating at once wait for each other (advisory lock).
        """
        target = SCHEMA_VERSION if target is None else target

        def run(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0] or 0) if row else 0
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"the database has schema version {current}, newer than this program's "
                    f"{SCHEMA_VERSION}: upgrade kamstrup382"
                )
            for version in range(current + 1, target + 1):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

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
            reading_columns = _reading_arrays(readings)
            failure_columns = _failure_arrays(failures)
        except (AttributeError, TypeError, ValueError, ArithmeticError) as exc:
            raise StorageError(f"cannot store a malformed record: {exc}") from exc
        done_meters = [r.meter for r in readings] + [f.meter for f in failures]
        done_slots = [aware(r.slot) for r in readings] + [aware(f.slot) for f in failures]

        def run(conn: psycopg.Connection[Any]) -> int:
            new = 0
            if readings:
                if outbox:
                    query = (
                        f"WITH ins AS ({_INSERT_READINGS}), "
                        "queued AS (INSERT INTO outbox (reading_id, meter) "
                        "SELECT id, meter FROM ins ORDER BY id RETURNING 1), "
                        "claims AS (INSERT INTO outbox_claims (meter) "
                        "SELECT DISTINCT meter FROM ins ORDER BY 1 "
                        "ON CONFLICT (meter) DO NOTHING RETURNING 1) "
                        "SELECT count(*) FROM ins"
                    )
                else:
                    query = f"WITH ins AS ({_INSERT_READINGS}) SELECT count(*) FROM ins"
                row = conn.execute(query, reading_columns).fetchone()
                new = int(row[0]) if row else 0
            if failures:
                conn.execute(_INSERT_FAILURES, failure_columns)
            if done_meters:
                conn.execute(_COMPLETE, (done_meters, done_slots))
            return new

        return self._transaction("storing readings", run)

    # -- outbox ----------------------------------------------------------------------------------
    def outbox_pending(
        self, limit: int = 100, *, holder: str | None = None, lease: timedelta = OUTBOX_LEASE
    ) -> list[OutboxItem]:
        if holder is None:
            query = f"{_SELECT_OUTBOX} ORDER BY o.id LIMIT %s"
            rows = self._locked(
                "reading the outbox", lambda c: c.execute(query, (limit,)).fetchall()
            )
            return [(int(row[0]), _reading(row[1:])) for row in rows]
        if lease <= timedelta(0):
            raise StorageError(f"an outbox lease must be positive, got {lease}")

        def run(conn: psycopg.Connection[Any]) -> list[Any]:
            window = outbox_window(limit)
            params = {"me": holder, "limit": limit, "lease": lease, "window": window}
            meters = [row[0] for row in conn.execute(_CLAIM_OUTBOX, params).fetchall()]
            if not meters:
                # the oldest entries are all held by others: look further, if there is more
                more = conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT %s) o", (window + 1,)
                ).fetchone()
                if more is None or int(more[0]) <= window:
                    return []
                params["window"] = None
                meters = [row[0] for row in conn.execute(_CLAIM_OUTBOX, params).fetchall()]
                if not meters:
                    return []
            query = f"{_SELECT_OUTBOX} WHERE o.meter = ANY(%s) ORDER BY o.id LIMIT %s"
            return conn.execute(query, (meters, limit)).fetchall()

        rows = self._transaction("claiming outbox entries", run)
        return [(int(row[0]), _reading(row[1:])) for row in rows]

    def outbox_done(self, ids: Sequence[int], *, holder: str | None = None) -> None:
        if not ids and holder is None:
            return
        numbers = [int(i) for i in ids]

        def run(conn: psycopg.Connection[Any]) -> None:
            if numbers:
                conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (numbers,))
            if holder is not None:
                conn.execute(_RELEASE_OUTBOX, (holder,))

        self._transaction("removing published outbox entries", run)

    def outbox_release(self, holder: str) -> None:
        self._locked("releasing outbox claims", lambda c: c.execute(_RELEASE_OUTBOX, (holder,)))

    def last_bcc_algorithms(self, meters: Sequence[str]) -> dict[str, str]:
        names = sorted(set(meters))
        query = (
            "SELECT m, (SELECT bcc_algorithm FROM readings WHERE meter = m "
            "ORDER BY read_at DESC, id DESC LIMIT 1) FROM unnest(%s::text[]) AS m"
        )
        rows = self._locked(
            "reading the BCC algorithms", lambda c: c.execute(query, (names,)).fetchall()
        )
        return {meter: algorithm for meter, algorithm in rows if algorithm is not None}

    # -- leases ----------------------------------------------------------------------------------
    def claim(
        self, collector_id: str, meters: Sequence[str], slot: datetime, lease: timedelta
    ) -> list[str]:
        """The meters of ``meters`` that ``collector_id`` holds for ``slot`` after this call.

        New claims and renewals of this collector's own undone claims, each valid ``lease``
        from now on the database clock. See the protocol on
        :class:`~kamstrup382.storage.base.Storage`. Order: as in ``meters``.
        """
        wanted = sorted(set(meters))
        if not wanted:
            return []
        if lease <= timedelta(0):
            raise StorageError(f"a lease must be positive, got {lease}")
        slot = aware(slot)

        def ensure(conn: psycopg.Connection[Any]) -> None:
            # one row per meter, created once, in a stable order (no deadlock between inserters)
            conn.execute(
                "INSERT INTO leases (meter) SELECT m FROM unnest(%s::text[]) AS m "
                "WHERE NOT EXISTS (SELECT 1 FROM leases WHERE meter = m) ORDER BY m "
                "ON CONFLICT (meter) DO NOTHING",
                (wanted,),
            )

        def take(conn: psycopg.Connection[Any]) -> set[str]:
            params = {"meters": wanted, "slot": slot, "me": collector_id, "lease": lease}
            return {row[0] for row in conn.execute(_CLAIM, params).fetchall()}

        self._locked("creating leases", ensure)
        got = self._transaction("claiming meters", take)
        return [m for m in dict.fromkeys(meters) if m in got]

    def complete(self, collector_id: str, meters: Sequence[str], slot: datetime) -> None:
        """Mark ``meters`` handled for ``slot``: no collector gets them again for it."""
        if not meters:
            return
        ordered = sorted(set(meters))
        slots = [aware(slot)] * len(ordered)
        self._transaction("completing leases", lambda c: c.execute(_COMPLETE, (ordered, slots)))

    def release(self, collector_id: str, meters: Sequence[str], slot: datetime) -> None:
        """Expire ``collector_id``'s undone claims on ``meters`` for ``slot`` now."""
        if not meters:
            return
        self._locked(
            "releasing leases",
            lambda c: c.execute(
                "UPDATE leases SET expires_at = now() WHERE meter = ANY(%s) AND slot = %s "
                "AND holder = %s AND NOT done",
                (sorted(set(meters)), aware(slot), collector_id),
            ),
        )

    # -- reading ---------------------------------------------------------------------------------
    def meters(self) -> list[str]:
        query = "SELECT meter FROM readings UNION SELECT meter FROM failures ORDER BY 1"
        rows = self._locked("listing meters", lambda c: c.execute(query).fetchall())
        return [row[0] for row in rows]

    def latest(self, meter: str) -> ReadingRecord | None:
        query = f"{_SELECT_READING} WHERE meter = %s ORDER BY read_at DESC, id DESC LIMIT 1"
        row = self._locked(
            "reading the latest reading", lambda c: c.execute(query, (meter,)).fetchone()
        )
        return None if row is None else _reading(row)

    def readings(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ReadingRecord]:
        where, params = _where(meter, since, until, "read_at")
        query = f"{_SELECT_READING}{where} ORDER BY meter, read_at, id"
        return self._stream("reading readings", query, params, _reading)

    def consumption(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ConsumptionRow]:
        where, params = _where(meter, since, until, "read_at")
        query = (
            f"SELECT meter, read_at, energy, tariff_1, tariff_2 FROM readings{where} "
            "ORDER BY meter, read_at, id"
        )

        def convert(row: Any) -> tuple[str, datetime, Decimal, Decimal, Decimal]:
            return (row[0], row[1], row[2], row[3], row[4])

        return consumption_rows(self._stream("reading consumption", query, params, convert))

    def attempts(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[AttemptRecord]:
        rwhere, rparams = _where(meter, since, until, "read_at")
        fwhere, fparams = _where(meter, since, until, "failed_at")
        query = (
            "SELECT meter, slot, read_at AS at, true AS ok, duration, attempts, NULL AS kind "
            f"FROM readings{rwhere} UNION ALL "
            "SELECT meter, slot, failed_at AS at, false AS ok, duration, attempts, kind "
            f"FROM failures{fwhere} ORDER BY at, meter"
        )

        def convert(row: Any) -> AttemptRecord:
            return AttemptRecord(
                meter=row[0],
                slot=row[1],
                at=row[2],
                ok=bool(row[3]),
                duration=row[4],
                attempts=row[5],
                kind=row[6],
            )

        return self._stream("reading attempts", query, [*rparams, *fparams], convert)

    def status(self) -> list[MeterStatus]:
        def run(conn: psycopg.Connection[Any]) -> list[MeterStatus]:
            ok = {
                m: (int(n), last)
                for m, n, last in conn.execute(
                    "SELECT meter, count(*), max(read_at) FROM readings GROUP BY meter"
                ).fetchall()
            }
            counts = {
                m: int(n)
                for m, n in conn.execute(
                    "SELECT meter, count(*) FROM failures GROUP BY meter"
                ).fetchall()
            }
            last_bad = {
                m: (at, kind, message)
                for m, at, kind, message in conn.execute(
                    "SELECT DISTINCT ON (meter) meter, failed_at, kind, message FROM failures "
                    "ORDER BY meter, failed_at DESC, id DESC"
                ).fetchall()
            }
            result = []
            for m in sorted(ok.keys() | counts.keys()):
                successes, last_ok = ok.get(m, (0, None))
                at, kind, message = last_bad.get(m, (None, None, None))
                result.append(
                    MeterStatus(
                        meter=m,
                        last_success=last_ok,
                        last_error=at,
                        last_error_kind=kind,
                        last_error_message=message,
                        successes=successes,
                        failures=counts.get(m, 0),
                    )
                )
            return result

        return self._locked("reading the status", run)


def _reading_arrays(readings: Sequence[ReadingRecord]) -> list[list[Any]]:
    """The readings as one array per column, in :data:`_READING_COLUMNS` order."""
    columns: list[list[Any]] = [[] for _ in _READING_COLUMNS]
    for r in readings:
        v = r.values
        row = (
            r.meter,
            aware(r.slot),
            aware(r.read_at),
            *(getattr(v, name) for name in REGISTER_COLUMNS),
            r.identification,
            r.type_number,
            str(r.bcc_algorithm),
            bytes(r.raw),
            float(r.answer_delay),
            float(r.duration),
            int(r.attempts),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _failure_arrays(failures: Sequence[FailureRecord]) -> list[list[Any]]:
    return [
        [f.meter for f in failures],
        [aware(f.slot) for f in failures],
        [aware(f.failed_at) for f in failures],
        [f.kind for f in failures],
        [f.message for f in failures],
        [int(f.attempts) for f in failures],
        [float(f.duration) for f in failures],
    ]
