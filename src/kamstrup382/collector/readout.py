"""One readout of a meter, of either protocol, judged against the meter's history: the
record the reading it accepted becomes.

The reader's ``accept`` hook is the meter's judge (:class:`~.history.Judge` for mode A,
:class:`~.kmp_history.KmpJudge` for KMP): the reader returns only a reading its judge
accepted, which then becomes the history the next reading must follow.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from kamstrup382.collector.history import History
from kamstrup382.collector.kmp_history import KmpHistory
from kamstrup382.collector.pool import MeterReader
from kamstrup382.collector.records import kmp_reading_record, reading_record
from kamstrup382.reader import Reading
from kamstrup382.reader.aio import Gate
from kamstrup382.reader.kmp_aio import AsyncKmpReader
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.storage import AnyReading

__all__ = ["ReadAt", "judged_readout"]

#: When a reading was taken, on the collector's clock.
ReadAt = Callable[[Reading | KmpReading], datetime]


async def judged_readout(
    meter: str,
    slot: datetime,
    reader: MeterReader,
    *,
    gate: Gate | None,
    read_at: ReadAt,
    history: History,
    kmp_history: KmpHistory,
) -> AnyReading:
    """One readout of ``meter`` on ``reader`` (its first request held by ``gate``) for
    ``slot``, judged against ``history`` or ``kmp_history``: the record of the reading
    accepted."""
    if isinstance(reader, AsyncKmpReader):
        kmp_judge = kmp_history.judge(meter, read_at)
        kmp_reading = await reader.read(gate=gate, accept=kmp_judge)
        assert kmp_judge.accepted is not None
        kmp_history.accepted(meter, kmp_judge.accepted)
        return kmp_reading_record(meter, slot, kmp_reading, kmp_judge.accepted)
    judge = history.judge(meter, read_at)
    reading = await reader.read(gate=gate, accept=judge)
    assert judge.accepted is not None
    history.accepted(meter, judge.accepted)
    accepted = judge.accepted
    return reading_record(meter, slot, reading, accepted.at, accepted.values)
