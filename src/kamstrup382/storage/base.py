"""The one small interface both storage backends implement (SQLite, PostgreSQL).

Synchronous by design: sqlite3 is synchronous, and the collector keeps storage calls off the
event loop (``asyncio.to_thread``), batching a cycle's results into one transaction.
Errors of sqlite3 and psycopg are translated into :class:`~kamstrup382.errors.StorageError`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType

from kamstrup382.storage.power_records import LivePower, PowerMinute
from kamstrup382.storage.records import (
    AnyReading,
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    MeterStatus,
)

__all__ = ["MQTT_QUEUE", "OUTBOX_LEASE", "OutboxItem", "Storage", "outbox_names", "outbox_window"]

#: An outbox entry: (id, record), a mode A or a KMP reading. Ids grow in the order the
#: readings were stored.
OutboxItem = tuple[int, AnyReading]
#: How long a publisher's claim on meters of the outbox lasts unless released (see
#: :meth:`Storage.outbox_pending`).
OUTBOX_LEASE = timedelta(seconds=60)


#: The queue of the MQTT output: every entry queued before the outbox had one queue per output
#: (schema version 7) is in it, and it is the queue a caller that names none means.
MQTT_QUEUE = "mqtt"


def outbox_names(outbox: Sequence[str] | bool) -> tuple[str, ...]:
    """The queues a :meth:`Storage.record` call fills: the names given, once each, in order
    (``True``: the MQTT output's queue, as before there was one queue per output)."""
    if isinstance(outbox, bool):
        return (MQTT_QUEUE,) if outbox else ()
    if isinstance(outbox, str):
        raise TypeError("outbox: a sequence of output names, not one string")
    return tuple(dict.fromkeys(outbox))


def outbox_window(limit: int) -> int:
    """How many of the oldest outbox entries a claim looks at first for free meters (it looks
    at all of them only when those are all held by others): bounded work per round."""
    return max(20 * limit, 1000)


class Storage(abc.ABC):
    """A place that keeps readings, failures and the MQTT outbox; see the backends."""

    url: str
    #: Whether several collectors may read into this storage at once, sharing the meters
    #: through its leases (:meth:`claim`); False: one collector has every meter to itself.
    shares_meters: bool = False

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

    # -- pin 3's power (storage/power_table.py) -------------------------------------------------
    @abc.abstractmethod
    def store_power(
        self, minutes: Sequence[PowerMinute] = (), live: Sequence[LivePower] = ()
    ) -> None: ...

    @abc.abstractmethod
    def power_minutes(
        self, meter: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[PowerMinute]: ...

    @abc.abstractmethod
    def live_power(self) -> list[LivePower]: ...

    @abc.abstractmethod
    def prune_power(self, before: datetime) -> int: ...

    # -- writing: one transaction per call; all or nothing ------------------------------------
    @abc.abstractmethod
    def record(
        self,
        readings: Sequence[AnyReading],
        failures: Sequence[FailureRecord] = (),
        *,
        outbox: Sequence[str] | bool = (),
    ) -> int:
        """Store readings and failures in one transaction; return how many readings were new.

        ``readings`` may mix mode A and KMP readings (each kind has its table). Idempotent on
        (meter, slot): a reading already stored for that slot is left as it is. Every new
        reading (mode A first, then KMP, each in the order given) is also queued, in the same
        transaction, in the outbox queue of each output named in ``outbox`` (``("mqtt",
        "influxdb")``; ``True`` means ``("mqtt",)``). A failed write stores nothing of the batch.
        """

    # -- the outbox (durable queues of readings to publish) ----------------------------------
    #
    # The outbox holds one queue per output (``output``: its name, "mqtt", "influxdb"): a new
    # reading is queued in each named by ``record(outbox=...)``, and each output drains its own
    # queue, so that one whose server is down holds back nothing of the others. Everything
    # below is per queue: entries, claims (per (output, meter)) and holders.
    #
    # Several publishers (the outputs of several collectors on one database) drain one queue.
    # Each meter's entries must be published once and in order, so a publisher claims whole
    # meters, never single entries:
    # 1. ``outbox_pending(limit, holder=me, lease=...)`` claims up to ``limit`` meters with
    #    entries waiting (oldest first) that nobody holds, or whose holder's claim expired, or
    #    that ``me`` holds already, with SELECT ... FOR UPDATE SKIP LOCKED on their claim rows;
    #    it returns the oldest entries of the meters claimed, at most ``limit``, in id order.
    #    (It looks for such meters among the oldest ``outbox_window(limit)`` entries, and
    #    among all of them when those yield none.)
    # 2. The holder publishes them in order and calls ``outbox_done(ids, holder=me)``: the
    #    published entries are removed and its claims given back, in one transaction.
    #    ``outbox_release(me)`` gives the claims back without removing anything (on failure).
    # 3. A holder that dies keeps its meters until its claims expire (``lease``, on the
    #    database's clock); then any publisher takes them over, from the oldest entry.
    # Without ``holder``, ``outbox_pending`` only looks: every waiting entry, nothing claimed.

    @abc.abstractmethod
    def outbox_pending(
        self,
        limit: int = 100,
        *,
        holder: str | None = None,
        lease: timedelta = OUTBOX_LEASE,
        output: str = MQTT_QUEUE,
    ) -> list[OutboxItem]:
        """The oldest unpublished entries of ``output``'s queue, in the order they were queued.

        With ``holder``: only entries of meters claimed for ``holder`` by this call (see above).
        """

    @abc.abstractmethod
    def outbox_done(
        self, ids: Sequence[int], *, holder: str | None = None, output: str = MQTT_QUEUE
    ) -> None:
        """Remove published entries of ``output``'s queue; with ``holder``, also give back all
        its claims on that queue."""

    @abc.abstractmethod
    def outbox_release(self, holder: str, *, output: str = MQTT_QUEUE) -> None:
        """Give back every claim ``holder`` has on ``output``'s queue (nothing is removed)."""

    @abc.abstractmethod
    def outbox_backlog(self, output: str = MQTT_QUEUE) -> tuple[int, datetime | None]:
        """How many entries wait in ``output``'s queue, and the ``read_at`` of the oldest
        (``None`` when none waits)."""

    @abc.abstractmethod
    def last_bcc_algorithms(self, meters: Sequence[str]) -> dict[str, str]:
        """The BCC algorithm of each meter's newest mode A reading (meters without one, KMP
        meters, are left out)."""

    # -- what ``protocol = "auto"`` found per meter ----------------------------------------------
    @abc.abstractmethod
    def remember_protocol(self, meter: str, protocol: str, baud: int | None) -> None:
        """Keep what auto-detection found for ``meter``: ``protocol`` (``"iec"`` or ``"kmp"``)
        at ``baud`` (``None``: the protocol's own), replacing what was kept before."""

    @abc.abstractmethod
    def known_protocols(self, meters: Sequence[str]) -> dict[str, tuple[str, int | None]]:
        """What :meth:`remember_protocol` kept for each of ``meters`` (protocol, baud); meters
        without an entry are left out."""

    @abc.abstractmethod
    def forget_protocols(self, meters: Sequence[str]) -> None:
        """Drop what :meth:`remember_protocol` kept for ``meters`` (to be detected again)."""

    # -- announcements (what an output announced; see storage/announcements.py) ---------------
    @abc.abstractmethod
    def announce(
        self, output: str, holder: str, devices: Mapping[str, str], lease: timedelta
    ) -> dict[str, str | None]:
        """Record that ``holder`` announces ``devices`` (device id -> meter name) on
        ``output`` until ``lease`` from now; per device, the meter name recorded before."""

    @abc.abstractmethod
    def stale_announcements(
        self, output: str, holder: str, keep: Sequence[str], *, everyone: bool = False
    ) -> dict[str, str]:
        """Devices of ``output`` no running collector announces (device id -> meter name)."""

    @abc.abstractmethod
    def forget_announcements(
        self, output: str, holder: str, devices: Sequence[str], *, everyone: bool = False
    ) -> int:
        """Delete the announcements of ``devices`` that are still stale; how many."""

    @abc.abstractmethod
    def release_announcements(self, output: str, holder: str) -> None:
        """End ``holder``'s leases on ``output``'s announcements now."""

    # -- reading -----------------------------------------------------------------------------
    @abc.abstractmethod
    def meters(self) -> list[str]:
        """Names of all meters with at least one attempt stored."""

    @abc.abstractmethod
    def latest(self, meter: str) -> AnyReading | None:
        """The meter's newest reading, mode A or KMP (the later ``read_at``)."""

    def latest_readings(self, meters: Sequence[str]) -> dict[str, AnyReading]:
        """The newest reading of each of ``meters``, mode A or KMP (meters without one are left
        out).

        The SQL backends answer it in one query, whatever the number of meters (a collector's
        start loads the history of all of its meters with it).
        """
        found = {meter: self.latest(meter) for meter in dict.fromkeys(meters)}
        return {meter: record for meter, record in found.items() if record is not None}

    @abc.abstractmethod
    def readings(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[AnyReading]:
        """Readings of both protocols in ``read_at`` order (meter, then time; a meter's mode A
        and KMP readings interleaved), streamed: constant memory."""

    @abc.abstractmethod
    def consumption(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[ConsumptionRow]:
        """Consumption between consecutive readings, across register wrap, streamed (a KMP
        meter's from its ``energy`` register, its tariffs ``None``: see
        :func:`~kamstrup382.storage.columns.consumption_rows`)."""

    @abc.abstractmethod
    def failures(
        self,
        meter: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[FailureRecord]:
        """Failed readouts in ``failed_at`` order (meter, then time), with their raw bytes
        where they have any, streamed: constant memory."""

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
        """Per meter: last success, last error, success counts (KMP readings are successes)."""

    # -- leases: which collector reads which meter in a slot ---------------------------------
    #
    # Protocol (PostgreSQL; one lease row per meter with holder, slot, expiry and a done flag):
    # 1. At each slot, and again every lease/4 or so while the slot lasts, a collector calls
    #    ``claim(me, meters_not_yet_handled_by_me, slot, lease)``. It gets back the meters it
    #    holds now for ``slot``: new ones, and its own earlier ones (whose expiry is renewed).
    # 2. A meter is handed out when it is free for the slot: never claimed for it, or claimed
    #    but its lease expired (its holder died or hung) and nothing was stored for it yet.
    #    Rows are taken with SELECT ... FOR UPDATE SKIP LOCKED: two claims never share a meter.
    # 3. ``record()`` of a reading or failure for (meter, slot) marks the lease done in the same
    #    transaction; a done meter (or one with a reading for the slot) is never handed out
    #    again for that slot.
    # 4. ``release()`` gives back claimed meters that will not be read (shutdown), so others
    #    take them at once instead of after expiry.
    # 5. Should a slow holder store after its lease was taken over, the reading is still kept
    #    once: readings are unique on (meter, slot), the second write is ignored.
    # Expiry is measured on the database server's clock, so collector clocks may differ.
    # Single-process backends (SQLite) keep no leases: claim returns every meter given.

    def claim(
        self, collector_id: str, meters: Sequence[str], slot: datetime, lease: timedelta
    ) -> list[str]:
        """The meters of ``meters`` that ``collector_id`` must read for ``slot`` (see above)."""
        return list(dict.fromkeys(meters))

    def release(self, collector_id: str, meters: Sequence[str], slot: datetime) -> None:
        """Give back ``meters`` claimed for ``slot`` but not read (e.g. on shutdown)."""
        return None
