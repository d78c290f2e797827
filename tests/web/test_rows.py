"""The API's rows: timings to the millisecond, exact register values."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from kamstrup382.storage import AttemptRecord
from kamstrup382.web.rows import attempt_row, reading_row
from tests.storage.samples import reading


def test_timings_to_the_millisecond() -> None:
    record = dataclasses.replace(reading(), answer_delay=0.250999999999749, duration=5.8330000001)
    row = reading_row(record)
    assert (row["answer_delay"], row["duration"]) == (0.251, 5.833)
    attempt = AttemptRecord(
        meter="house",
        slot=record.slot,
        at=record.slot + timedelta(seconds=1),
        ok=True,
        duration=6.0004999,
        attempts=1,
        kind=None,
    )
    assert attempt_row(attempt)["duration"] == 6.0
