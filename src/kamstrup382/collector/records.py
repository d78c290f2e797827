"""The rows a readout becomes: a reading, a failure, or a meter missed in its slot."""

from __future__ import annotations

from datetime import datetime

from kamstrup382.collector.kmp_history import KmpAccepted
from kamstrup382.errors import ImplausibleError, Kamstrup382Error
from kamstrup382.protocol import MeterValues
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.reader.reading import Reading
from kamstrup382.storage import MISSED, FailureRecord, KmpReadingRecord, ReadingRecord

__all__ = [
    "failure_record",
    "kmp_reading_record",
    "missed_message",
    "missed_record",
    "reading_record",
]


def reading_record(
    meter: str,
    slot: datetime,
    reading: Reading,
    read_at: datetime,
    values: MeterValues | None = None,
) -> ReadingRecord:
    """``reading`` of ``meter`` for ``slot``, its request sent at ``read_at``; ``values``: its
    :meth:`~kamstrup382.reader.reading.Reading.meter_values` where the caller has them already
    (the history's judge built them)."""
    type_number = reading.identification.type_number
    return ReadingRecord(
        meter=meter,
        slot=slot,
        read_at=read_at,
        values=reading.meter_values() if values is None else values,
        identification=str(reading.identification).removeprefix("/"),
        type_number=str(type_number) if type_number is not None else None,
        bcc_algorithm=reading.bcc_algorithm.value,
        raw=reading.raw,
        answer_delay=reading.answer_delay,
        duration=reading.duration,
        attempts=reading.attempts,
    )


def kmp_reading_record(
    meter: str, slot: datetime, reading: KmpReading, accepted: KmpAccepted
) -> KmpReadingRecord:
    """The KMP ``reading`` of ``meter`` for ``slot`` as its judge accepted it (``accepted``:
    the values in the table's units, the time on the collector's clock, the meter's
    identity)."""
    return KmpReadingRecord(
        meter=meter,
        slot=slot,
        read_at=accepted.at,
        meter_type=accepted.meter_type,
        software_revision=accepted.software_revision,
        serial=accepted.serial,
        values=accepted.values,
        duration=reading.duration,
        exchanges=reading.exchanges,
        attempts=reading.attempts,
    )


def failure_record(
    meter: str,
    slot: datetime,
    error: Kamstrup382Error | OSError,
    failed_at: datetime,
    duration: float,
) -> FailureRecord:
    """The readout of ``meter`` for ``slot`` ended in ``error`` at ``failed_at``.

    An :class:`OSError` (the readers translate these; a safety net) is a ``connection`` failure.
    A telegram refused as implausible keeps its bytes (``raw``): what the meter was heard to
    send, never stored as a reading.
    """
    if isinstance(error, Kamstrup382Error):
        kind = error.kind
        # set by the reader on what it raises after its retries; an error raised outside them
        # (e.g. while setting the reader up) ended the collector's one attempt
        attempts = error.attempts if error.attempts is not None else 1
    else:
        kind, attempts = "connection", 1
    return FailureRecord(
        meter=meter,
        slot=slot,
        failed_at=failed_at,
        kind=kind,
        message=str(error) or type(error).__name__,
        attempts=attempts,
        duration=duration,
        raw=error.raw if isinstance(error, ImplausibleError) else None,
    )


def missed_record(meter: str, slot: datetime, at: datetime, message: str) -> FailureRecord:
    """``meter`` was not read in ``slot`` (its turn came at ``at``): no attempt made."""
    return FailureRecord(
        meter=meter,
        slot=slot,
        failed_at=at,
        kind=MISSED,
        message=message,
        attempts=0,
        duration=0.0,
    )


def missed_message(
    slot: datetime,
    end: datetime,
    line: str,
    last: tuple[str, datetime] | None,
    now: datetime,
) -> str:
    """Why the meters left on ``line`` at ``now`` were not read in the slot ``slot``-``end``;
    ``last``: the meter read last on the line and when its readout ended."""
    if last is not None and last[1] >= end:
        return (
            f"not read in slot {slot.isoformat()}: line {line} was busy until the slot ended "
            f"(the readout of {last[0]} ran until {last[1].isoformat()}, "
            f"the slot ended at {end.isoformat()})"
        )
    late = (now - end).total_seconds()
    return (
        f"not read in slot {slot.isoformat()}: the collector fell behind "
        f"(the meter's turn came {late:.1f} s after the slot ended)"
    )
