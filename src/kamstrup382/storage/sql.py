"""The queries both SQL backends share, written once over their :class:`Dialect`.

:class:`SqlStorage` holds every query that is the same on SQLite and PostgreSQL but for what
the dialect says (placeholders, how times and registers are kept, boolean literals, a list
parameter, the newest failure of each meter): the reads, the schema migrations' driver, the
outbox's reads and removals, the conversion of records to rows and back. A backend keeps only
what is its own: its connection and transactions, its migrations (the column types), how it
writes a batch fast, how it claims outbox meters, and leases on PostgreSQL.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from kamstrup382.errors import StorageError
from kamstrup382.storage.announcements import Announcements
from kamstrup382.storage.base import (
    MQTT_QUEUE,
    OUTBOX_LEASE,
    OutboxItem,
    Storage,
    outbox_window,
)
from kamstrup382.storage.columns import CONSUMPTION_REGISTERS, consumption_rows
from kamstrup382.storage.dialect import Dialect
from kamstrup382.storage.power_table import PowerTable
from kamstrup382.storage.records import (
    AnyReading,
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    KmpReadingRecord,
    MeterStatus,
    ReadingRecord,
)
from kamstrup382.storage.rows import (
    FAILURE_COLUMNS,
    KMP_COLUMNS,
    READING_COLUMNS,
    failure_from_row,
    failure_row,
    from_wide,
    kmp_from_row,
    kmp_row,
    outbox_columns,
    reading_from_row,
    reading_row,
    wide_columns,
)

__all__ = ["FAILURE_COLUMNS", "KMP_COLUMNS", "READING_COLUMNS", "Connection", "SqlStorage"]

_T = TypeVar("_T")

_SELECT_READING = f"SELECT {', '.join(READING_COLUMNS)} FROM readings"
_SELECT_KMP = f"SELECT {', '.join(KMP_COLUMNS)} FROM kmp_readings"
_SELECT_FAILURE = f"SELECT {', '.join(FAILURE_COLUMNS)} FROM failures"
_SELECT_OUTBOX = (
    f"SELECT {outbox_columns()} FROM outbox o "
    "LEFT JOIN readings r ON r.id = o.reading_id "
    "LEFT JOIN kmp_readings k ON k.id = o.kmp_reading_id"
)
#: The rows of one batch to record: mode A readings, KMP readings, failures.
Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared queries need of a DB-API connection (sqlite3 and psycopg alike)."""

    def execute(self, sql: Any, params: Any = ..., /) -> _Cursor: ...


ConnT = TypeVar("ConnT", bound=Connection)


class SqlStorage(Announcements, PowerTable, Storage, Generic[ConnT]):
    """A :class:`Storage` over SQL: the shared queries; see the module documentation."""

    dialect: ClassVar[Dialect]
    #: version -> statements that bring version - 1 to version (the backend's column types).
    migrations: ClassVar[Mapping[int, tuple[str, ...]]]
    #: How error messages name the database (a file path, "the database").
    location: str

    # -- what each backend provides ------------------------------------------------------------
    @abc.abstractmethod
    def _locked(self, what: str, fn: Callable[[ConnT], _T]) -> _T:
        """``fn`` on the shared connection, under its lock, errors translated."""

    @abc.abstractmethod
    def _transaction(self, what: str, fn: Callable[[ConnT], _T]) -> _T:
        """``fn`` in one transaction on the shared connection (all or nothing)."""

    @abc.abstractmethod
    def _stream(
        self, what: str, sql: str, params: Sequence[Any], convert: Callable[[Any], _T]
    ) -> Iterator[_T]:
        """Rows of ``sql`` read on a connection of their own, converted one by one."""

    @abc.abstractmethod
    def _claim_outbox(
        self,
        conn: ConnT,
        output: str,
        holder: str,
        *,
        limit: int,
        lease: timedelta,
        window: int | None,
    ) -> list[str]:
        """Claim for ``holder`` up to ``limit`` meters of ``output``'s queue that are free for
        it, oldest entry first, among the meters of the oldest ``window`` entries (``None``:
        all); the meters claimed. See :meth:`Storage.outbox_pending`."""

    def _now(self, conn: ConnT) -> datetime:
        """The time leases are measured on (SQLite: this machine's clock)."""
        return datetime.now(UTC)

    def _lock_schema(self, conn: ConnT) -> None:
        """Keep concurrent migrations apart (inside the migration's transaction)."""

    # -- rows ------------------------------------------------------------------------------------
    def rows(self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]) -> Rows:
        """The rows of a batch to record (mode A, KMP, failures); :class:`StorageError` for a
        malformed record."""
        d = self.dialect
        try:
            return (
                [reading_row(r, d) for r in readings if isinstance(r, ReadingRecord)],
                [kmp_row(r, d) for r in readings if isinstance(r, KmpReadingRecord)],
                [failure_row(f, d) for f in failures],
            )
        except (AttributeError, TypeError, ValueError, ArithmeticError) as exc:
            raise StorageError(f"cannot store a malformed record: {exc}") from exc

    def _reading(self, row: Sequence[Any]) -> ReadingRecord:
        return reading_from_row(row, self.dialect)

    def _kmp(self, row: Sequence[Any]) -> KmpReadingRecord:
        return kmp_from_row(row, self.dialect)

    def _any(self, row: Sequence[Any]) -> AnyReading:
        return from_wide(row, self.dialect)

    def _failure(self, row: Sequence[Any]) -> FailureRecord:
        return failure_from_row(row, self.dialect)

    def _where(
        self, meter: str | None, since: datetime | None, until: datetime | None, at: str
    ) -> tuple[str, list[Any]]:
        """A WHERE clause for a meter and a half-open time range ``[since, until)`` on ``at``."""
        p = self.dialect.param
        conditions: list[str] = []
        params: list[Any] = []
        if meter is not None:
            conditions.append(f"meter = {p}")
            params.append(meter)
        if since is not None:
            conditions.append(f"{at} >= {p}")
            params.append(self.dialect.to_time(since))
        if until is not None:
            conditions.append(f"{at} < {p}")
            params.append(self.dialect.to_time(until))
        return (" WHERE " + " AND ".join(conditions) if conditions else ""), params

    # -- the schema ------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The version of the schema in the database (0: empty)."""

        def read(conn: ConnT) -> int:
            if conn.execute(self.dialect.schema_table_exists).fetchone() is None:
                return 0
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            return int(row[0] or 0) if row else 0

        return self._locked("reading the schema version", read)

    def migrate(self, target: int | None = None) -> None:
        """Apply the missing migrations up to ``target`` (default: the latest), in order (a
        version number without a step of its own is skipped)."""
        latest = max(self.migrations)
        target = latest if target is None else target
        insert = f"INSERT INTO schema_version (version) VALUES ({self.dialect.param})"

        def run(conn: ConnT) -> None:
            self._lock_schema(conn)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0] or 0) if row else 0
            if current > latest:
                raise StorageError(
                    f"{self.location} has schema version {current}, newer than this program's "
                    f"{latest}: upgrade kamstrup382"
                )
            # in order (the numbers are contiguous; a gap would be skipped)
            for version in sorted(v for v in self.migrations if current < v <= target):
                for statement in self.migrations[version]:
                    conn.execute(statement)
                conn.execute(insert, (version,))

        self._transaction("migrating the schema", run)

    # -- the outbox ------------------------------------------------------------------------------
    def outbox_pending(
        self,
        limit: int = 100,
        *,
        holder: str | None = None,
        lease: timedelta = OUTBOX_LEASE,
        output: str = MQTT_QUEUE,
    ) -> list[OutboxItem]:
        d = self.dialect
        p = d.param
        if holder is None:
            sql = f"{_SELECT_OUTBOX} WHERE o.output = {p} ORDER BY o.id LIMIT {p}"
            rows = self._locked(
                "reading the outbox", lambda c: c.execute(sql, (output, limit)).fetchall()
            )
            return [(int(row[0]), self._any(row[1:])) for row in rows]
        if lease <= timedelta(0):
            raise StorageError(f"an outbox lease must be positive, got {lease}")

        def run(conn: ConnT) -> list[Any]:
            window = outbox_window(limit)
            meters = self._claim_outbox(
                conn, output, holder, limit=limit, lease=lease, window=window
            )
            if not meters:
                # the oldest entries are all held by others: look further, if there is more
                (more,) = conn.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM outbox WHERE output = {p} LIMIT {p}) o",
                    (output, window + 1),
                ).fetchone()
                if int(more) <= window:
                    return []
                meters = self._claim_outbox(
                    conn, output, holder, limit=limit, lease=lease, window=None
                )
                if not meters:
                    return []
            sql = (
                f"{_SELECT_OUTBOX} WHERE o.output = {p} AND o.meter IN "
                f"(SELECT name FROM {d.names} n) ORDER BY o.id LIMIT {p}"
            )
            return conn.execute(sql, (output, d.list_param(meters), limit)).fetchall()

        rows = self._transaction("claiming outbox entries", run)
        return [(int(row[0]), self._any(row[1:])) for row in rows]

    def outbox_done(
        self, ids: Sequence[int], *, holder: str | None = None, output: str = MQTT_QUEUE
    ) -> None:
        if not ids and holder is None:
            return
        numbers = [int(i) for i in ids]
        p = self.dialect.param

        def run(conn: ConnT) -> None:
            if numbers:
                sql = (
                    f"DELETE FROM outbox WHERE output = {p} "
                    f"AND id IN (SELECT id FROM {self.dialect.ids} i)"
                )
                conn.execute(sql, (output, self.dialect.list_param(numbers)))
            if holder is not None:
                conn.execute(_release_outbox(p), (holder, output))

        self._transaction("removing published outbox entries", run)

    def outbox_release(self, holder: str, *, output: str = MQTT_QUEUE) -> None:
        sql = _release_outbox(self.dialect.param)
        self._transaction("releasing outbox claims", lambda c: c.execute(sql, (holder, output)))

    def outbox_backlog(self, output: str = MQTT_QUEUE) -> tuple[int, datetime | None]:
        p = self.dialect.param
        sql = (
            f"SELECT (SELECT count(*) FROM outbox WHERE output = {p}), "
            "(SELECT coalesce(r.read_at, k.read_at) FROM outbox o "
            "LEFT JOIN readings r ON r.id = o.reading_id "
            "LEFT JOIN kmp_readings k ON k.id = o.kmp_reading_id "
            f"WHERE o.output = {p} ORDER BY o.id LIMIT 1)"
        )
        count, oldest = self._locked(
            "reading the outbox backlog", lambda c: c.execute(sql, (output, output)).fetchone()
        )
        return int(count), None if oldest is None else self.dialect.from_time(oldest)

    def last_bcc_algorithms(self, meters: Sequence[str]) -> dict[str, str]:
        d = self.dialect
        sql = (
            "SELECT n.name, (SELECT bcc_algorithm FROM readings WHERE meter = n.name "
            f"ORDER BY read_at DESC, id DESC LIMIT 1) FROM {d.names} n"
        )
        names = d.list_param(sorted(set(meters)))
        rows = self._locked(
            "reading the BCC algorithms", lambda c: c.execute(sql, (names,)).fetchall()
        )
        return {meter: algorithm for meter, algorithm in rows if algorithm is not None}

    # -- what "auto" found per meter ------------------------------------------------------------
    def remember_protocol(self, meter: str, protocol: str, baud: int | None) -> None:
        if protocol not in ("iec", "kmp"):
            raise StorageError(f"{meter}: unknown protocol {protocol!r} (iec or kmp)")
        if baud is not None and baud <= 0:
            raise StorageError(f"{meter}: a baud rate must be positive, got {baud}")
        p = self.dialect.param
        sql = (
            f"INSERT INTO meter_protocols (meter, protocol, baud, found_at) "
            f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (meter) DO UPDATE SET "
            "protocol = excluded.protocol, baud = excluded.baud, found_at = excluded.found_at"
        )

        def run(conn: ConnT) -> None:
            now = self.dialect.to_time(self._now(conn))
            conn.execute(sql, (meter, protocol, baud, now))

        self._transaction("remembering a meter's protocol", run)

    def known_protocols(self, meters: Sequence[str]) -> dict[str, tuple[str, int | None]]:
        d = self.dialect
        sql = (
            "SELECT meter, protocol, baud FROM meter_protocols "
            f"WHERE meter IN (SELECT name FROM {d.names} n)"
        )
        names = d.list_param(sorted(set(meters)))
        rows = self._locked(
            "reading the meters' protocols", lambda c: c.execute(sql, (names,)).fetchall()
        )
        return {m: (protocol, None if baud is None else int(baud)) for m, protocol, baud in rows}

    def forget_protocols(self, meters: Sequence[str]) -> None:
        sql = (
            f"DELETE FROM meter_protocols WHERE meter IN (SELECT name FROM {self.dialect.names} n)"
        )
        names = self.dialect.list_param(sorted(set(meters)))

        def run(conn: ConnT) -> None:
            conn.execute(sql, (names,))

        self._transaction("forgetting meters' protocols", run)

    # -- reading ---------------------------------------------------------------------------------
    def meters(self) -> list[str]:
        sql = (
            "SELECT meter FROM readings UNION SELECT meter FROM kmp_readings "
            "UNION SELECT meter FROM failures ORDER BY 1"
        )
        rows = self._locked("listing meters", lambda c: c.execute(sql).fetchall())
        return [row[0] for row in rows]

    def latest(self, meter: str) -> AnyReading | None:
        p = self.dialect.param
        newest = f"WHERE meter = {p} ORDER BY read_at DESC, id DESC LIMIT 1"

        def run(conn: ConnT) -> tuple[Any, Any]:
            return (
                conn.execute(f"{_SELECT_READING} {newest}", (meter,)).fetchone(),
                conn.execute(f"{_SELECT_KMP} {newest}", (meter,)).fetchone(),
            )

        mode_a, kmp = self._locked("reading the latest reading", run)
        found: list[AnyReading] = [] if mode_a is None else [self._reading(mode_a)]
        found += [] if kmp is None else [self._kmp(kmp)]
        return _newest(found).get(meter)

    def latest_readings(self, meters: Sequence[str]) -> dict[str, AnyReading]:
        d = self.dialect
        # one query per table for every meter: the newest reading of each name, through the
        # index on (meter, read_at); of a meter read in both protocols, the newer
        names = d.list_param(sorted(set(meters)))

        def newest(table: str, select: str) -> str:
            return (
                f"{select} WHERE id IN (SELECT (SELECT id FROM {table} WHERE meter = n.name "
                f"ORDER BY read_at DESC, id DESC LIMIT 1) FROM {d.names} n)"
            )

        def run(conn: ConnT) -> tuple[list[Any], list[Any]]:
            return (
                conn.execute(newest("readings", _SELECT_READING), (names,)).fetchall(),
                conn.execute(newest("kmp_readings", _SELECT_KMP), (names,)).fetchall(),
            )

        mode_a, kmp = self._locked("reading the latest readings", run)
        return _newest([*map(self._reading, mode_a), *map(self._kmp, kmp)])

    def failures(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[FailureRecord]:
        where, params = self._where(meter, since, until, "failed_at")
        sql = f"{_SELECT_FAILURE}{where} ORDER BY meter, failed_at, id"
        return self._stream("reading failures", sql, params, self._failure)

    def readings(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[AnyReading]:
        where, params = self._where(meter, since, until, "read_at")
        # both tables in one query (one snapshot), merged in (meter, read_at) order
        sql = (
            f"SELECT {wide_columns(0, 'r')} FROM readings r{where} UNION ALL "
            f"SELECT {wide_columns(1, 'k')} FROM kmp_readings k{where} "
            "ORDER BY meter, read_at, kind, id"
        )
        return self._stream("reading readings", sql, [*params, *params], self._any)

    def consumption(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ConsumptionRow]:
        where, params = self._where(meter, since, until, "read_at")
        names = ", ".join(r.name for r in CONSUMPTION_REGISTERS)
        # a KMP reading: its energy register, no tariffs (NULL); one without energy is skipped
        kmp_where = f"{where} AND energy IS NOT NULL" if where else " WHERE energy IS NOT NULL"
        sql = (
            f"SELECT meter, read_at, 0 AS kind, id, {names} FROM readings{where} UNION ALL "
            f"SELECT meter, read_at, 1 AS kind, id, energy, NULL, NULL FROM kmp_readings"
            f"{kmp_where} ORDER BY meter, read_at, kind, id"
        )
        d = self.dialect
        (_, e), (_, t1), (_, t2) = ((r.name, r.decimals) for r in CONSUMPTION_REGISTERS)

        def convert(row: Any) -> Any:
            if int(row[2]) == 1:
                return (row[0], d.from_time(row[1]), d.from_exact(row[4]), None, None)
            return (
                row[0],
                d.from_time(row[1]),
                d.from_register(row[4], e),
                d.from_register(row[5], t1),
                d.from_register(row[6], t2),
            )

        stream = self._stream("reading consumption", sql, [*params, *params], convert)
        return consumption_rows(stream)

    def attempts(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[AttemptRecord]:
        d = self.dialect
        rwhere, rparams = self._where(meter, since, until, "read_at")
        fwhere, fparams = self._where(meter, since, until, "failed_at")
        sql = (
            f"SELECT meter, slot, read_at AS at, {d.true} AS ok, duration, attempts, NULL AS kind "
            f"FROM readings{rwhere} UNION ALL "
            f"SELECT meter, slot, read_at AS at, {d.true} AS ok, duration, attempts, NULL AS kind "
            f"FROM kmp_readings{rwhere} UNION ALL "
            f"SELECT meter, slot, failed_at AS at, {d.false} AS ok, duration, attempts, kind "
            f"FROM failures{fwhere} ORDER BY at, meter"
        )

        def convert(row: Any) -> AttemptRecord:
            return AttemptRecord(
                meter=row[0],
                slot=d.from_time(row[1]),
                at=d.from_time(row[2]),
                ok=bool(row[3]),
                duration=row[4],
                attempts=row[5],
                kind=row[6],
            )

        params = [*rparams, *rparams, *fparams]
        return self._stream("reading attempts", sql, params, convert)

    def status(self) -> list[MeterStatus]:
        d = self.dialect

        def time(at: Any) -> datetime | None:
            return None if at is None else d.from_time(at)

        def run(conn: ConnT) -> list[MeterStatus]:
            ok = {
                m: (int(n), time(last))
                for m, n, last in conn.execute(
                    "SELECT meter, count(*), max(read_at) FROM (SELECT meter, read_at FROM "
                    "readings UNION ALL SELECT meter, read_at FROM kmp_readings) a GROUP BY meter"
                ).fetchall()
            }
            counts = {
                m: int(n)
                for m, n in conn.execute(
                    "SELECT meter, count(*) FROM failures GROUP BY meter"
                ).fetchall()
            }
            last_bad = {
                m: (time(at), kind, message)
                for m, at, kind, message in conn.execute(d.last_failures).fetchall()
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


def _newest(records: Iterator[AnyReading] | Sequence[AnyReading]) -> dict[str, AnyReading]:
    """Per meter, the record with the latest ``read_at`` (a tie: the first given)."""
    newest: dict[str, AnyReading] = {}
    for record in records:
        kept = newest.get(record.meter)
        if kept is None or record.read_at > kept.read_at:
            newest[record.meter] = record
    return newest


def _release_outbox(param: str) -> str:
    return (
        "UPDATE outbox_claims SET holder = NULL, expires_at = NULL "
        f"WHERE holder = {param} AND output = {param}"
    )
