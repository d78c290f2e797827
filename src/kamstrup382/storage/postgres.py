"""The PostgreSQL backend (psycopg 3): shared by many collectors, with leases.

Registers are ``NUMERIC(digits + decimals, decimals)`` (a KMP reading's ``NUMERIC`` without a
scale: the meter's digits), times ``timestamptz``, the raw telegram ``bytea``. Writes are one
transaction per :meth:`PostgresStorage.record`, sent as arrays (``unnest``) in one statement
per table, idempotent with ``ON CONFLICT DO NOTHING``.

Threads: one connection for writes and short queries, serialised by a lock; every streamed read
opens a connection of its own and reads through a server-side cursor (constant memory),
closing it when the iterator ends or is closed.

The queries shared with SQLite are in :mod:`kamstrup382.storage.sql`; this module keeps the
connection, the schema's PostgreSQL types, the batch insert, the outbox claim and the leases
(see the protocol on :class:`~kamstrup382.storage.base.Storage` and :meth:`claim`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg

from kamstrup382.errors import StorageError
from kamstrup382.storage.base import outbox_names
from kamstrup382.storage.columns import REGISTER_COLUMNS, aware
from kamstrup382.storage.dialect import POSTGRES
from kamstrup382.storage.records import AnyReading, FailureRecord
from kamstrup382.storage.rows import (
    FAILURE_COLUMNS,
    KMP_COLUMNS,
    KMP_REGISTER_COLUMNS,
    READING_COLUMNS,
)
from kamstrup382.storage.sql import SqlStorage

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
    # a failed readout keeps the bytes it was refused for (an implausible telegram)
    5: ("ALTER TABLE failures ADD COLUMN raw BYTEA",),
    # what each output announced (Home Assistant devices), to clear the ones no longer
    # configured (see storage/announcements.py)
    6: (
        """CREATE TABLE announced (
            output TEXT NOT NULL,
            device TEXT NOT NULL,
            holder TEXT NOT NULL,
            meter TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (output, device, holder)
        )""",
    ),
    # one queue per output (MQTT, InfluxDB): entries and claims per (output, meter); what was
    # queued before belongs to MQTT, the only output that had a queue
    7: (
        "ALTER TABLE outbox ADD COLUMN output TEXT NOT NULL DEFAULT 'mqtt'",
        "ALTER TABLE outbox ALTER COLUMN output DROP DEFAULT",
        "DROP INDEX outbox_meter_id",
        "CREATE INDEX outbox_output_id ON outbox (output, id)",
        "CREATE INDEX outbox_output_meter_id ON outbox (output, meter, id)",
        "ALTER TABLE outbox_claims ADD COLUMN output TEXT NOT NULL DEFAULT 'mqtt'",
        "ALTER TABLE outbox_claims ALTER COLUMN output DROP DEFAULT",
        "ALTER TABLE outbox_claims DROP CONSTRAINT outbox_claims_pkey",
        "ALTER TABLE outbox_claims ADD PRIMARY KEY (output, meter)",
    ),
    # pin 3's pulses: per-minute power and each meter's live figure (storage/power_table.py)
    8: (
        """CREATE TABLE power_minutes (
            meter TEXT NOT NULL,
            minute TIMESTAMPTZ NOT NULL,
            pulses INTEGER NOT NULL,
            mean_w DOUBLE PRECISION NOT NULL,
            min_w DOUBLE PRECISION,
            max_w DOUBLE PRECISION,
            PRIMARY KEY (meter, minute)
        )""",
        "CREATE INDEX power_minutes_minute ON power_minutes (minute)",
        """CREATE TABLE power_live (
            meter TEXT PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL,
            watts DOUBLE PRECISION,
            energy TEXT,
            pulses INTEGER NOT NULL,
            connected INTEGER NOT NULL
        )""",
    ),
    # every dialect in one table (the 382C): tariffs 3 and 4, NULL where the meter has none;
    # last month's peak NULL where it has none (never 0); the actual peak with three decimals
    9: (
        "ALTER TABLE readings ADD COLUMN tariff_3 NUMERIC(7, 0) CHECK (tariff_3 >= 0)",
        "ALTER TABLE readings ADD COLUMN tariff_4 NUMERIC(7, 0) CHECK (tariff_4 >= 0)",
        "ALTER TABLE readings ALTER COLUMN last_month_peak DROP NOT NULL",
        "ALTER TABLE readings ALTER COLUMN actual_peak TYPE NUMERIC(9, 3)",
    ),
    # KMP readings (382J, Jx3, Lx7, M): a table of their own, one NUMERIC column per register
    # of the 382 set (no scale: the meter's digits kept), NULL where the meter sent none; what
    # "auto" found per meter; the outbox points at a reading of either table (exactly one)
    10: (
        f"""CREATE TABLE kmp_readings (
            id BIGSERIAL PRIMARY KEY,
            meter TEXT NOT NULL,
            slot TIMESTAMPTZ NOT NULL,
            read_at TIMESTAMPTZ NOT NULL,
            meter_type INTEGER NOT NULL,
            software_revision TEXT NOT NULL,
            serial BIGINT NOT NULL,
            {" ".join(f"{name} NUMERIC," for name in KMP_REGISTER_COLUMNS)}
            duration DOUBLE PRECISION NOT NULL,
            exchanges INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            UNIQUE (meter, slot)
        )""",
        "CREATE INDEX kmp_readings_meter_read_at ON kmp_readings (meter, read_at)",
        "CREATE INDEX kmp_readings_read_at ON kmp_readings (read_at)",
        """CREATE TABLE meter_protocols (
            meter TEXT PRIMARY KEY,
            protocol TEXT NOT NULL CHECK (protocol IN ('iec', 'kmp')),
            baud INTEGER CHECK (baud > 0),
            found_at TIMESTAMPTZ NOT NULL
        )""",
        "ALTER TABLE outbox ALTER COLUMN reading_id DROP NOT NULL",
        "ALTER TABLE outbox ADD COLUMN kmp_reading_id BIGINT "
        "REFERENCES kmp_readings (id) ON DELETE CASCADE",
        "ALTER TABLE outbox ADD CONSTRAINT outbox_one_reading "
        "CHECK ((reading_id IS NULL) <> (kmp_reading_id IS NULL))",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

#: Key of the advisory lock that serialises migrations of concurrent collectors.
_MIGRATION_LOCK = 382_000_001

_READING_TYPES = (
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    *("numeric" for _ in REGISTER_COLUMNS[1:]),
    "text",
    "text",
    "text",
    "bytea",
    "float8",
    "float8",
    "int4",
)
_FAILURE_TYPES = (
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
    "int4",
    "float8",
    "bytea",
)
_KMP_TYPES = (
    "text",
    "timestamptz",
    "timestamptz",
    "int4",
    "text",
    "int8",
    *("numeric" for _ in KMP_REGISTER_COLUMNS),
    "float8",
    "int4",
    "int4",
)


def _insert(table: str, columns: Sequence[str], types: Sequence[str]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for t in types)}) "
        "ON CONFLICT (meter, slot) DO NOTHING RETURNING id, meter"
    )


def _insert_queued(insert: str, column: str) -> str:
    """``insert`` (RETURNING id, meter), its new rows queued in the outbox through ``column``
    in each output named by the last parameter; the number of new rows."""
    return (
        f"WITH ins AS ({insert}), "
        "outs AS (SELECT * FROM unnest(%s::text[]) WITH ORDINALITY AS u (name, n)), "
        f"queued AS (INSERT INTO outbox ({column}, meter, output) "
        "SELECT ins.id, ins.meter, outs.name FROM ins CROSS JOIN outs "
        "ORDER BY ins.id, outs.n RETURNING 1), "
        "claims AS (INSERT INTO outbox_claims (output, meter) "
        "SELECT DISTINCT outs.name, ins.meter FROM ins CROSS JOIN outs ORDER BY 1, 2 "
        "ON CONFLICT (output, meter) DO NOTHING RETURNING 1) "
        "SELECT count(*) FROM ins"
    )


_INSERT_READINGS = _insert("readings", READING_COLUMNS, _READING_TYPES)
_INSERT_KMP = _insert("kmp_readings", KMP_COLUMNS, _KMP_TYPES)
#: (insert alone, insert and queue) per readings table.
_INSERTS = {
    "readings": (
        f"WITH ins AS ({_INSERT_READINGS}) SELECT count(*) FROM ins",
        _insert_queued(_INSERT_READINGS, "reading_id"),
    ),
    "kmp_readings": (
        f"WITH ins AS ({_INSERT_KMP}) SELECT count(*) FROM ins",
        _insert_queued(_INSERT_KMP, "kmp_reading_id"),
    ),
}
_INSERT_FAILURES = (
    f"INSERT INTO failures ({', '.join(FAILURE_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for t in _FAILURE_TYPES)}) "
    "ON CONFLICT (meter, slot, failed_at) DO NOTHING"
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
      AND NOT EXISTS (
        SELECT 1 FROM kmp_readings k WHERE k.meter = l.meter AND k.slot = %(slot)s
      )
    ORDER BY l.meter
    FOR UPDATE OF l SKIP LOCKED
)
UPDATE leases l SET slot = %(slot)s, holder = %(me)s, expires_at = now() + %(lease)s, done = false
FROM free WHERE l.meter = free.meter
RETURNING l.meter
"""
# meters of ``output``'s queue free for ``me`` (see Storage.outbox_pending), oldest entry
# first, among the meters of its oldest ``window`` entries (NULL: all of them)
_CLAIM_OUTBOX = """
WITH heads AS (
    SELECT w.meter, min(w.id) AS first
    FROM (SELECT meter, id FROM outbox WHERE output = %(output)s ORDER BY id LIMIT %(window)s) w
    GROUP BY w.meter
), free AS (
    SELECT c.meter FROM outbox_claims c JOIN heads h ON h.meter = c.meter
    WHERE c.output = %(output)s
      AND (c.holder IS NULL OR c.holder = %(me)s OR c.expires_at <= now())
    ORDER BY h.first
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE outbox_claims c SET holder = %(me)s, expires_at = now() + %(lease)s
FROM free WHERE c.output = %(output)s AND c.meter = free.meter
RETURNING c.meter
"""


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """``rows`` as one list per column (``width`` of them), for ``unnest``."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


class PostgresStorage(SqlStorage[psycopg.Connection[Any]]):
    """Readings in a PostgreSQL database at ``url`` (a libpq connection URL)."""

    dialect = POSTGRES
    migrations = MIGRATIONS
    #: Many collectors share one database: leases decide who reads which meter in a slot.
    shares_meters = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = "the database"
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

    # -- the connection --------------------------------------------------------------------------
    def _locked(self, what: str, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise StorageError(f"{what}: the storage is closed")
            if self._conn.broken or self._conn.closed:  # the server restarted, the link dropped
                self._conn = self._connect()
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

    def _now(self, conn: psycopg.Connection[Any]) -> datetime:
        # the database's clock: collectors' clocks may differ
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        return aware(row[0])

    def _lock_schema(self, conn: psycopg.Connection[Any]) -> None:
        # concurrent collectors migrating at once wait for each other
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

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
        queued = list(outbox_names(outbox))
        reading_rows, kmp_rows, failure_rows = self.rows(readings, failures)
        tables = (
            ("readings", _columns(reading_rows, len(READING_COLUMNS)), bool(reading_rows)),
            ("kmp_readings", _columns(kmp_rows, len(KMP_COLUMNS)), bool(kmp_rows)),
        )
        failure_columns = _columns(failure_rows, len(FAILURE_COLUMNS))
        done_meters = [r.meter for r in readings] + [f.meter for f in failures]
        done_slots = [aware(r.slot) for r in readings] + [aware(f.slot) for f in failures]

        def run(conn: psycopg.Connection[Any]) -> int:
            new = 0
            for table, columns, some in tables:
                if some:
                    alone, with_outbox = _INSERTS[table]
                    query = with_outbox if queued else alone
                    params: list[Any] = [*columns, queued] if queued else list(columns)
                    row = conn.execute(query, params).fetchone()
                    new += int(row[0]) if row else 0
            if failure_rows:
                conn.execute(_INSERT_FAILURES, failure_columns)
            if done_meters:
                conn.execute(_COMPLETE, (done_meters, done_slots))
            return new

        return self._transaction("storing readings", run)

    def _claim_outbox(
        self,
        conn: psycopg.Connection[Any],
        output: str,
        holder: str,
        *,
        limit: int,
        lease: timedelta,
        window: int | None,
    ) -> list[str]:
        params = {"output": output, "me": holder, "limit": limit, "lease": lease, "window": window}
        return [row[0] for row in conn.execute(_CLAIM_OUTBOX, params).fetchall()]

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
