"""The power tables, written once for both backends: per-minute power (``power_minutes``) and
each meter's live figure (``power_live``), mixed into
:class:`~kamstrup382.storage.sql.SqlStorage`.

Both are written with ``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and PostgreSQL alike): a
minute written again (the collector restarted within it) keeps the newest figures, and the live
table holds one row per meter. Old minutes go with :meth:`PowerTable.prune_power`, which the
collector calls with its ``storage.power_retention``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from kamstrup382.storage.dialect import Dialect
from kamstrup382.storage.power_records import LivePower, PowerMinute

__all__ = ["PowerTable"]

_T = TypeVar("_T")

_MINUTE_COLUMNS = ("meter", "minute", "pulses", "mean_w", "min_w", "max_w")
_LIVE_COLUMNS = ("meter", "at", "watts", "energy", "pulses", "connected")


def _upsert(table: str, columns: Sequence[str], key: Sequence[str], param: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([param] * len(columns))}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


class PowerTable(abc.ABC):
    """The power methods of a SQL storage (see the module doc)."""

    dialect: ClassVar[Dialect]

    @abc.abstractmethod
    def _transaction(self, what: str, fn: Callable[[Any], _T]) -> _T: ...

    @abc.abstractmethod
    def _stream(
        self, what: str, sql: str, params: Sequence[Any], convert: Callable[[Any], _T]
    ) -> Iterator[_T]: ...

    def store_power(
        self, minutes: Sequence[PowerMinute] = (), live: Sequence[LivePower] = ()
    ) -> None:
        """Minutes and live figures, in one transaction (a minute or a meter again: replaced)."""
        d = self.dialect
        minute_sql = _upsert("power_minutes", _MINUTE_COLUMNS, ("meter", "minute"), d.param)
        live_sql = _upsert("power_live", _LIVE_COLUMNS, ("meter",), d.param)

        def run(conn: Any) -> None:
            for m in minutes:
                row = (m.meter, d.to_time(m.minute), m.pulses, m.mean_w, m.min_w, m.max_w)
                conn.execute(minute_sql, row)
            for p in live:
                energy = None if p.energy_kwh is None else str(p.energy_kwh)
                values = (p.meter, d.to_time(p.at), p.watts, energy, p.pulses, int(p.connected))
                conn.execute(live_sql, values)

        self._transaction("storing power", run)

    def power_minutes(
        self, meter: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[PowerMinute]:
        """The minutes of ``meter`` in ``[since, until)``, oldest first."""
        d = self.dialect
        conditions, params = [f"meter = {d.param}"], [meter]
        if since is not None:
            conditions.append(f"minute >= {d.param}")
            params.append(d.to_time(since))
        if until is not None:
            conditions.append(f"minute < {d.param}")
            params.append(d.to_time(until))
        sql = (
            f"SELECT {', '.join(_MINUTE_COLUMNS)} FROM power_minutes "
            f"WHERE {' AND '.join(conditions)} ORDER BY minute"
        )

        def convert(row: Any) -> PowerMinute:
            return PowerMinute(row[0], d.from_time(row[1]), int(row[2]), *row[3:6])

        return list(self._stream("reading power", sql, params, convert))

    def live_power(self) -> list[LivePower]:
        """Each meter's live figure, by meter name."""
        d = self.dialect
        sql = f"SELECT {', '.join(_LIVE_COLUMNS)} FROM power_live ORDER BY meter"

        def convert(row: Any) -> LivePower:
            energy = None if row[3] is None else Decimal(row[3])
            return LivePower(row[0], d.from_time(row[1]), row[2], energy, int(row[4]), bool(row[5]))

        return list(self._stream("reading live power", sql, (), convert))

    def prune_power(self, before: datetime) -> int:
        """Remove the minutes before ``before``; how many."""
        d = self.dialect

        def run(conn: Any) -> int:
            cursor = conn.execute(
                f"DELETE FROM power_minutes WHERE minute < {d.param}", (d.to_time(before),)
            )
            return int(getattr(cursor, "rowcount", 0) or 0)

        return self._transaction("pruning power", run)
