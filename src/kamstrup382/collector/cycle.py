"""What one collector cycle did (:class:`CycleResult`), and the bookkeeping of one slot."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kamstrup382.collector.config import MeterConfig
from kamstrup382.storage import MISSED, AnyReading, FailureRecord, KmpReadingRecord, ReadingRecord

__all__ = ["CycleResult", "Result", "SlotState"]

#: One readout's record: a reading (mode A or KMP), or a failure.
Result = ReadingRecord | KmpReadingRecord | FailureRecord


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle did.

    ``failures``: readouts that failed. ``missed``: meters due that were not read because their
    slot ended before their turn on the line came (``missed_records``: the failures of kind
    ``missed`` stored for them), or because the collector shut down. ``elsewhere``: meters due
    that another collector holds (PostgreSQL leases). ``started`` and ``finished``: seconds of
    ``time.monotonic``.
    """

    readings: tuple[AnyReading, ...] = ()
    failures: tuple[FailureRecord, ...] = ()
    missed: tuple[str, ...] = ()
    elsewhere: tuple[str, ...] = ()
    missed_records: tuple[FailureRecord, ...] = ()
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every meter this collector took on was read."""
        return not self.failures and not self.missed

    @property
    def duration(self) -> float:
        return self.finished - self.started

    def summary(self) -> list[str]:
        """One line per meter not read: ``name: kind: message``."""
        lines = [f"{f.meter}: {f.kind}: {f.message}" for f in self.failures]
        reasons = {f.meter: f.message for f in self.missed_records}
        lines += [
            f"{name}: {MISSED}: {reasons.get(name, 'not read in its slot (shutting down)')}"
            for name in self.missed
        ]
        return lines

    @classmethod
    def merge(cls, parts: Sequence[CycleResult], started: float, finished: float) -> CycleResult:
        return cls(
            readings=tuple(r for p in parts for r in p.readings),
            failures=tuple(f for p in parts for f in p.failures),
            missed=tuple(m for p in parts for m in p.missed),
            missed_records=tuple(f for p in parts for f in p.missed_records),
            elsewhere=tuple(m for p in parts for m in p.elsewhere),
            started=started,
            finished=finished,
        )


@dataclass
class SlotState:
    """Bookkeeping of one slot in one collector.

    ``handled``: meters this collector took on (all, or those it claimed); ``finished``: those
    done with (a result, or given up); ``missed``: those not read in the slot.
    """

    slot: datetime
    end: datetime
    meters: dict[str, MeterConfig]
    #: ``run_once(at=...)``: when the requests go out (otherwise at once).
    at: datetime | None = None
    handled: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def not_read(self, meters: Iterable[str]) -> None:
        """``meters`` are done with, unread."""
        names = list(meters)
        self.missed.extend(names)
        self.finished.update(names)

    def unread(self) -> list[str]:
        """The meters taken on here that got no result."""
        done = {result.meter for result in self.results}
        return [name for name in self.handled if name not in done]

    def result(self) -> CycleResult:
        """What this collector did in the slot (without times)."""
        return CycleResult(
            readings=tuple(
                r for r in self.results if isinstance(r, ReadingRecord | KmpReadingRecord)
            ),
            failures=tuple(
                r for r in self.results if isinstance(r, FailureRecord) and r.kind != MISSED
            ),
            missed=tuple(self.missed),
            elsewhere=tuple(name for name in self.meters if name not in self.handled),
            missed_records=tuple(
                r for r in self.results if isinstance(r, FailureRecord) and r.kind == MISSED
            ),
        )
