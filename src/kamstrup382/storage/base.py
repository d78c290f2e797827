"""The one small interface both storage backends implement (SQLite, PostgreSQL).

Synchronous by design: sqlite3 is synchronous, and the collector keeps storage calls off the
event loop (``asyncio.to_thread``), batching a cycle's results into one transaction.
Errors of sqlite3 and psycopg are translated into :class:`~kamstrup382.errors.StorageError`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from datetime import datetime
from types import TracebackType

from kamstrup382.storage.records import (
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    MeterStatus,
    ReadingRecord,
)

__all__ = ["OutboxItem", "Storage"]

#: An outbox entry: (id, record). Ids grow in the order the readings were stored.
OutboxItem = tuple[int, ReadingRecord]


class Storage(abc.ABC):
    """A place that keeps readings, failures and the MQTT outbox; see the backends."""

    url: str

    # -- life cycle -----------------------------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema to the current version (idempotent)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing: one transaction per call; all or nothing ------------------------------------
    @abc.abstractmethod
    def record(
        self,
        readings: Sequence[ReadingRecord],
        failures: Sequence[FailureRecord] = (),
        *,
        outbox: bool = False,
    ) -> int:
        """Store readings and failures in one transaction; return how many readings were new.

        Idempotent on (meter, slot): a reading already stored for that slot is left as it is.
        With ``outbox=True`` every new reading is also queued in the outbox, in the same
        transaction, for the MQTT publisher.
        """

    # -- the outbox (durable queue of readings to publish) -----------------------------------
    @abc.abstractmethod
    def outbox_pending(self, limit: int = 100) -> list[OutboxItem]:
        """The oldest unpublished entries, in the order they were queued."""

    @abc.abstractmethod
    def outbox_done(self, ids: Sequence[int]) -> None:
        """Remove published entries."""

    # -- reading -----------------------------------------------------------------------------
    @abc.abstractmethod
    def meters(self) -> list[str]:
        """Names of all meters with at least one attempt stored."""

    @abc.abstractmethod
    def latest(self, meter: str) -> ReadingRecord | None: ...

    @abc.abstractmethod
    def readings(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ReadingRecord]:
        """Readings in ``read_at`` order (meter, then time), streamed: constant memory."""

    @abc.abstractmethod
    def consumption(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ConsumptionRow]:
        """Consumption between consecutive readings, across register wrap, streamed."""

    @abc.abstractmethod
    def attempts(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[AttemptRecord]:
        """Every attempt, success or failure, in time order, streamed."""

    @abc.abstractmethod
    def status(self) -> list[MeterStatus]:
        """Per meter: last success, last error, success counts."""
