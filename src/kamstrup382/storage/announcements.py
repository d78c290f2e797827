"""What an output announced where, kept in the storage: the ``announced`` table (migration 6).

The MQTT output announces each meter to Home Assistant as one device (a retained discovery
config). To clear the configs of meters no longer configured (ghost devices) after a restart,
it must remember what it announced: one row per (output, device) with the meter's name, the
holder (the collector's MQTT client id) and a lease.

Several collectors sharing one database announce together. The protocol:

1. ``announce(output, holder, devices, lease)``: each collector, at start and then every half
   lease while it runs, upserts a row for every device it announces, held by itself until
   ``lease`` from now (on the database's clock for PostgreSQL). It learns the meter name each
   device had (a renamed meter: its old topics are cleared), or that the row is new.
2. ``stale_announcements(output, holder, keep)``: the rows no running collector announces:
   not in ``keep`` (what ``holder`` announces now), and either held by ``holder`` itself (a
   meter it announced and no longer has), or whose lease ran out (no running collector
   renewed it), or released.
3. The collector clears their retained configs, then ``forget_announcements(output, holder,
   devices)`` deletes those rows, checking the same condition again in the deleting
   transaction, so that a row another collector announced meanwhile stays.
4. ``release_announcements(output, holder)`` on shutdown ends the holder's leases at once, so
   that the next start (a new holder, a new process) may clear what it no longer configures.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from kamstrup382.errors import StorageError
from kamstrup382.storage.dialect import Dialect

__all__ = ["Announcements"]

_T = TypeVar("_T")


class Announcements(abc.ABC):
    """The ``announced`` table over a SQL backend (mixed into ``SqlStorage``)."""

    dialect: ClassVar[Dialect]

    @abc.abstractmethod
    def _locked(self, what: str, fn: Callable[[Any], _T]) -> _T: ...

    @abc.abstractmethod
    def _transaction(self, what: str, fn: Callable[[Any], _T]) -> _T: ...

    @abc.abstractmethod
    def _now(self, conn: Any) -> datetime:
        """The database's time (PostgreSQL's ``now()``; SQLite: this machine's clock)."""

    def _stale(self, conn: Any, holder: str, everyone: bool) -> tuple[str, list[Any]]:
        """The condition of a row no running collector announces, and its parameters
        (``everyone``: one collector has the storage to itself, every row is its own)."""
        if everyone:
            return "1 = 1", []
        p = self.dialect.param
        now = self.dialect.to_time(self._now(conn))
        return f"(holder IS NULL OR holder = {p} OR expires_at <= {p})", [holder, now]

    def announce(
        self, output: str, holder: str, devices: Mapping[str, str], lease: timedelta
    ) -> dict[str, str | None]:
        """Record that ``holder`` announces ``devices`` (device id -> meter name) on
        ``output`` until ``lease`` from now; per device, the meter name recorded before
        (``None``: not recorded before)."""
        if lease <= timedelta(0):
            raise StorageError(f"an announcement lease must be positive, got {lease}")
        d = self.dialect
        p = d.param
        wanted = sorted(devices)

        def run(conn: Any) -> dict[str, str | None]:
            now = self._now(conn)
            expires = d.to_time(now + lease)
            before: dict[str, str | None] = dict.fromkeys(wanted)
            if wanted:
                rows = conn.execute(
                    f"SELECT device, meter FROM announced WHERE output = {p} "
                    f"AND device IN (SELECT name FROM {d.names} n)",
                    (output, d.list_param(wanted)),
                ).fetchall()
                before.update({device: meter for device, meter in rows})
            # one statement for all rows, in device order: two collectors lock rows in one order
            rows = [(output, device, devices[device], holder, expires) for device in wanted]
            if not rows:
                return before
            conn.cursor().executemany(  # sqlite3 and psycopg cursors alike
                "INSERT INTO announced (output, device, meter, holder, expires_at) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (output, device) DO UPDATE "
                "SET meter = excluded.meter, holder = excluded.holder, "
                "expires_at = excluded.expires_at",
                rows,
            )
            return before

        return self._transaction("recording announcements", run)

    def stale_announcements(
        self, output: str, holder: str, keep: Sequence[str], *, everyone: bool = False
    ) -> dict[str, str]:
        """The devices of ``output`` (device id -> meter name) that no running collector
        announces: not in ``keep``, and held by ``holder``, released, or expired
        (``everyone``: all not in ``keep``)."""
        d = self.dialect
        p = d.param

        def run(conn: Any) -> list[Any]:
            stale, params = self._stale(conn, holder, everyone)
            return list(
                conn.execute(
                    f"SELECT device, meter FROM announced WHERE output = {p} AND {stale} "
                    f"AND device NOT IN (SELECT name FROM {d.names} n) ORDER BY device",
                    (output, *params, d.list_param(sorted(set(keep)))),
                ).fetchall()
            )

        rows = self._locked("reading announcements", run)
        return {device: meter for device, meter in rows}

    def forget_announcements(
        self, output: str, holder: str, devices: Sequence[str], *, everyone: bool = False
    ) -> int:
        """Delete the rows of ``devices`` whose configs ``holder`` cleared, unless a running
        collector announced them meanwhile; how many were deleted."""
        if not devices:
            return 0
        d = self.dialect
        p = d.param

        def run(conn: Any) -> int:
            stale, params = self._stale(conn, holder, everyone)
            cursor = conn.execute(
                f"DELETE FROM announced WHERE output = {p} AND {stale} "
                f"AND device IN (SELECT name FROM {d.names} n)",
                (output, *params, d.list_param(sorted(set(devices)))),
            )
            return int(getattr(cursor, "rowcount", 0) or 0)

        return self._transaction("forgetting announcements", run)

    def release_announcements(self, output: str, holder: str) -> None:
        """End ``holder``'s leases on ``output``'s announcements now (on shutdown)."""
        d = self.dialect
        p = d.param

        def run(conn: Any) -> None:
            now = d.to_time(self._now(conn))
            conn.execute(
                f"UPDATE announced SET expires_at = {p} WHERE output = {p} AND holder = {p}",
                (now, output, holder),
            )

        self._transaction("releasing announcements", run)
