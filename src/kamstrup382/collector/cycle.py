"""What one collector cycle did: :class:`CycleResult`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kamstrup382.storage import MISSED, FailureRecord, ReadingRecord

__all__ = ["CycleResult", "Result"]

#: One readout's record: a reading, or a failure.
Result = ReadingRecord | FailureRecord


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle did.

    ``failures``: readouts that failed. ``missed``: meters due that were not read because their
    slot ended before their turn on the line came (``missed_records``: the failures of kind
    ``missed`` stored for them), or because the collector shut down. ``elsewhere``: meters due
    that another collector holds (PostgreSQL leases). ``started`` and ``finished``: seconds of
    ``time.monotonic``.
    """

    readings: tuple[ReadingRecord, ...] = ()
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
