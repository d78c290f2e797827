"""What an output announced where, kept in the storage: the ``announced`` table (migration 6).

The MQTT output announces each meter to Home Assistant as one device (a retained discovery
config). To clear the configs of meters no longer configured (ghost devices) after a restart,
it must remember what it announced: one row per (output, device, holder) with the meter's
name and a lease. The holder is the collector's MQTT client id.

Several collectors sharing one database announce together, each with rows of its own, so that
no collector's leaving can make another's device look abandoned. The protocol:

1. ``announce(output, holder, devices, lease)``: each collector, at start and then every half
   lease while it runs, upserts its row for every device it announces, valid until ``lease``
   from now (on the database's clock for PostgreSQL). It learns the meter name each device had
   (its own row's, else the newest other's: a renamed meter's old topics are cleared), or that
   the device is new; expired rows of other holders of those devices are deleted (the table
   holds about one row per device and running collector).
2. ``stale_announcements(output, holder, keep)``: the devices no running collector announces:
   not in ``keep`` (what ``holder`` announces now), and without a row of another holder whose
   lease still runs (rows given up on shutdown or never renewed have run out).
3. The collector clears their retained configs, then ``forget_announcements(output, holder,
   devices)`` deletes their rows, checking the same condition again in the deleting
   transaction, so that a device another collector announced meanwhile stays.
4. ``release_announcements(output, holder)`` on shutdown ends the holder's leases at once (the
   rows stay: the next start learns names and renames from them).

``everyone=True`` (one collector alone on its storage, SQLite): every device not in ``keep``
is stale, whoever's rows it has.
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

    def _live_elsewhere(self, conn: Any, output: str, holder: str) -> tuple[str, list[Any]]:
        """A sub-query of the devices of ``output`` another holder announces now, and its
        parameters."""
        p = self.dialect.param
        now = self.dialect.to_time(self._now(conn))
        sql = (
            f"SELECT device FROM announced WHERE output = {p} AND holder <> {p} "
            f"AND expires_at > {p}"
        )
        return sql, [output, holder, now]

    def announce(
        self, output: str, holder: str, devices: Mapping[str, str], lease: timedelta
    ) -> dict[str, str | None]:
        """Record that ``holder`` announces ``devices`` (device id -> meter name) on
        ``output`` until ``lease`` from now; per device, the meter name recorded before (its
        own row's, else the newest other's; ``None``: the device was not recorded)."""
        if lease <= timedelta(0):
            raise StorageError(f"an announcement lease must be positive, got {lease}")
        d = self.dialect
        p = d.param
        wanted = sorted(devices)

        def run(conn: Any) -> dict[str, str | None]:
            now = self._now(conn)
            before: dict[str, str | None] = dict.fromkeys(wanted)
            if not wanted:
                return before
            names = d.list_param(wanted)
            rows = conn.execute(
                f"SELECT device, meter, holder = {p} AS mine, expires_at FROM announced "
                f"WHERE output = {p} AND device IN (SELECT name FROM {d.names} n) "
                "ORDER BY device, mine, expires_at",
                (holder, output, names),
            ).fetchall()
            for device, meter, _, _ in rows:  # the last of each device wins: its own, newest
                before[device] = meter
            rows_of_mine = [
                (output, device, holder, devices[device], d.to_time(now + lease))
                for device in wanted  # in device order: two collectors lock rows in one order
            ]
            conn.cursor().executemany(  # sqlite3 and psycopg cursors alike
                "INSERT INTO announced (output, device, holder, meter, expires_at) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}) "
                "ON CONFLICT (output, device, holder) DO UPDATE "
                "SET meter = excluded.meter, expires_at = excluded.expires_at",
                rows_of_mine,
            )
            conn.execute(
                f"DELETE FROM announced WHERE output = {p} AND holder <> {p} "
                f"AND expires_at <= {p} AND device IN (SELECT name FROM {d.names} n)",
                (output, holder, d.to_time(now), names),
            )
            return before

        return self._transaction("recording announcements", run)

    def stale_announcements(
        self, output: str, holder: str, keep: Sequence[str], *, everyone: bool = False
    ) -> dict[str, str]:
        """The devices of ``output`` (device id -> meter name) that no running collector
        announces: not in ``keep``, and no other holder's lease on them runs (``everyone``:
        all not in ``keep``)."""
        d = self.dialect
        p = d.param

        def run(conn: Any) -> list[Any]:
            live, params = (
                ("SELECT NULL AS device", [])
                if everyone
                else self._live_elsewhere(conn, output, holder)
            )
            return list(
                conn.execute(
                    f"SELECT device, max(meter) FROM announced WHERE output = {p} "
                    f"AND device NOT IN (SELECT name FROM {d.names} n) "
                    f"AND device NOT IN (SELECT device FROM ({live}) l WHERE device IS NOT NULL) "
                    "GROUP BY device ORDER BY device",
                    (output, d.list_param(sorted(set(keep))), *params),
                ).fetchall()
            )

        rows = self._locked("reading announcements", run)
        return {device: meter for device, meter in rows}

    def forget_announcements(
        self, output: str, holder: str, devices: Sequence[str], *, everyone: bool = False
    ) -> int:
        """Delete the rows of ``devices`` whose configs ``holder`` cleared, unless a running
        collector announced them meanwhile; how many rows were deleted."""
        if not devices:
            return 0
        d = self.dialect
        p = d.param

        def run(conn: Any) -> int:
            live, params = (
                ("SELECT NULL AS device", [])
                if everyone
                else self._live_elsewhere(conn, output, holder)
            )
            cursor = conn.execute(
                f"DELETE FROM announced WHERE output = {p} "
                f"AND device IN (SELECT name FROM {d.names} n) "
                f"AND device NOT IN (SELECT device FROM ({live}) l WHERE device IS NOT NULL)",
                (output, d.list_param(sorted(set(devices))), *params),
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
