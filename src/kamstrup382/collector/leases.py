"""Claims on meters, for collectors that share them through the storage's leases.

Where the storage is shared by several collectors (``Storage.shares_meters``: PostgreSQL), each
collector reads only the meters it claimed for a slot (``Storage.claim``; the rules are in
:mod:`kamstrup382.storage.base`), renews its claims on those still being read while it works,
claims again during the slot, so that the meters of a dead collector are taken over once their
lease has expired, and gives back what it claimed but did not read (``Storage.release``).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta

from kamstrup382.collector.config import MeterConfig
from kamstrup382.collector.writer import BatchWriter
from kamstrup382.errors import Kamstrup382Error

__all__ = ["CLAIM_LINES", "Leases"]

log = logging.getLogger(__name__)

#: Lines claimed per call of ``Storage.claim``.
CLAIM_LINES = 64


class Leases:
    """``collector_id``'s claims through ``writer``'s storage, each for ``lease``."""

    def __init__(self, writer: BatchWriter, collector_id: str, lease: timedelta) -> None:
        self.writer = writer
        self.collector_id = collector_id
        self.lease = lease
        #: Seconds between two claim rounds during a slot: a quarter of the lease, 0.1-30 s.
        self.reclaim_every = min(max(lease.total_seconds() / 4, 0.1), 30.0)

    async def claim(
        self,
        slot: datetime,
        unclaimed: Iterable[MeterConfig],
        renew: Collection[str],
        dispatch: Callable[[Iterable[str]], None],
    ) -> None:
        """Claim the ``unclaimed`` meters of ``slot`` a few lines at a time, and renew the
        claims on ``renew`` (meters still being read here); ``dispatch`` gets each chunk of
        meters claimed.

        Whole lines are claimed together, in an order shuffled per collector and slot, so that
        collectors starting a slot together share the meters instead of one taking all.
        """
        by_line: dict[str, list[str]] = defaultdict(list)
        for meter in unclaimed:
            by_line[meter.shared_line].append(meter.name)
        order = sorted(by_line)
        random.Random(f"{self.collector_id}|{slot.isoformat()}").shuffle(order)
        chunks = [
            [name for line in order[i : i + CLAIM_LINES] for name in by_line[line]]
            for i in range(0, len(order), CLAIM_LINES)
        ]
        if renew:
            chunks = [[*renew, *(chunks[0] if chunks else [])], *chunks[1:]]
        storage = self.writer.storage
        for chunk in chunks:
            try:
                claimed: list[str] = await self.writer.call(
                    storage.claim, self.collector_id, chunk, slot, self.lease
                )
            except Kamstrup382Error as exc:
                log.warning("claiming meters for slot %s failed: %s", slot.isoformat(), exc)
                return
            dispatch(claimed)

    async def release(self, slot: datetime, unread: Collection[str]) -> None:
        """Give back the meters of ``slot`` claimed here that got no result (shutdown,
        abandoned readouts): another collector may read them before their lease expires."""
        if not unread:
            return
        try:
            await self.writer.call(
                self.writer.storage.release, self.collector_id, list(unread), slot
            )
        except Kamstrup382Error as exc:
            log.warning("releasing %d meters failed (they expire instead): %s", len(unread), exc)
