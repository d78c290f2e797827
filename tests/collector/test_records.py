"""The rows a readout becomes: failures with their kind and attempts, missed meters' reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kamstrup382.collector.records import failure_record, missed_message, missed_record
from kamstrup382.errors import ReadTimeout, UsageError
from kamstrup382.storage import MISSED

SLOT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
END = SLOT + timedelta(minutes=15)


def test_a_failure_carries_the_errors_kind_message_and_the_readers_attempts() -> None:
    error = ReadTimeout("no answer", phase="answer")
    error.attempts = 3
    record = failure_record("m0", SLOT, error, END, 1.5)
    assert (record.meter, record.slot, record.failed_at) == ("m0", SLOT, END)
    assert (record.kind, record.attempts, record.duration) == ("timeout", 3, 1.5)
    assert record.message == str(error)


def test_an_error_outside_the_readers_retries_is_one_attempt_and_an_oserror_a_connection() -> None:
    assert failure_record("m0", SLOT, UsageError("bad port"), END, 0.0).attempts == 1
    record = failure_record("m0", SLOT, ConnectionRefusedError(), END, 0.0)
    assert (record.kind, record.attempts, record.message) == (
        "connection",
        1,
        "ConnectionRefusedError",
    )


def test_a_missed_meter_is_a_failure_without_an_attempt() -> None:
    record = missed_record("m1", SLOT, END, "why")
    assert (record.kind, record.attempts, record.duration, record.message) == (
        MISSED,
        0,
        0.0,
        "why",
    )


def test_the_reason_names_the_readout_that_held_the_line_past_the_slot() -> None:
    last = ("m0", END + timedelta(seconds=2))
    assert missed_message(SLOT, END, "bus", last, END + timedelta(seconds=2)) == (
        "not read in slot 2026-03-01T10:00:00+00:00: line bus was busy until the slot ended "
        "(the readout of m0 ran until 2026-03-01T10:15:02+00:00, "
        "the slot ended at 2026-03-01T10:15:00+00:00)"
    )


def test_otherwise_the_collector_fell_behind() -> None:
    last = ("m0", END - timedelta(minutes=1))  # the line was free before the slot ended
    for previous in (None, last):
        assert missed_message(SLOT, END, "bus", previous, END + timedelta(seconds=0.3)) == (
            "not read in slot 2026-03-01T10:00:00+00:00: the collector fell behind "
            "(the meter's turn came 0.3 s after the slot ended)"
        )
