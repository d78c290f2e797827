"""KMP readings in the spill journal: exact round trips (the meter's digits), replay into either
backend beside mode A readings and failures (and into the outbox), a torn last line skipped, a
line with a value that is not a finite number kept aside; the writer spilling KMP readings a
full database refused."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kamstrup382.collector.spill import SpillJournal, decode_line, encode_record
from kamstrup382.collector.writer import BatchWriter
from kamstrup382.errors import StorageError
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.storage import KmpReadingRecord
from kamstrup382.storage.url import open_storage
from tests.storage.full import FILLER, full_sqlite
from tests.storage.samples import failure, kmp_reading, reading

LOGGER = "kamstrup382.collector"
NAMES = [r.name for r in KMP_382_REGISTERS]


def _digits(record: object) -> dict[str, str]:
    assert isinstance(record, KmpReadingRecord)
    return {name: str(value) for name, value in record.values.items()}


@given(
    st.dictionaries(
        st.sampled_from(NAMES),
        st.decimals(allow_nan=False, allow_infinity=False, places=None),
    )
)
def test_a_kmp_reading_round_trips_with_its_digits(values: dict[str, Decimal]) -> None:
    record = dataclasses.replace(kmp_reading("flat", 1), values=values)
    back = decode_line(encode_record(record))
    assert back == record
    assert _digits(back) == _digits(record)  # "229.0" stays "229.0", absent stays absent


def test_a_journal_line_names_the_kmp_type_and_its_values() -> None:
    line = json.loads(encode_record(kmp_reading("flat", 0)))
    assert line["type"] == "kmp_reading"
    assert line["values"]["voltage_l2"] == "229.0"
    assert "energy_out_hires" not in line["values"]
    assert line["serial"] == 5_098_765_432


def test_a_replay_stores_kmp_readings_beside_mode_a_and_failures(
    tmp_path: Path, storage_url: str
) -> None:
    kmp = [kmp_reading("flat", i) for i in range(3)]
    journal = SpillJournal(tmp_path / "spill.jsonl")
    assert journal.append([reading("house", 0), *kmp], [failure("house", 1)]) == 5
    with open_storage(storage_url) as storage:
        assert journal.replay(storage, outbox=("mqtt",), batch_size=2) == 5
        assert list(storage.readings("flat")) == kmp
        assert [_digits(r) for r in storage.readings("flat")] == [_digits(r) for r in kmp]
        assert list(storage.readings("house")) == [reading("house", 0)]
        assert len(list(storage.failures())) == 1
        assert [r for _, r in storage.outbox_pending(10)] == [reading("house", 0), *kmp]
        assert journal.replay(storage) == 0  # emptied


def test_a_torn_kmp_line_is_skipped_and_a_bad_value_is_kept_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kmp = [kmp_reading("flat", i) for i in range(4)]
    journal = SpillJournal(tmp_path / "spill.jsonl")
    journal.append(kmp[:2], [])
    bad = json.loads(encode_record(kmp[2]))
    bad["values"]["power"] = "NaN"
    whole = journal.path.read_bytes() + json.dumps(bad).encode("ascii") + b"\n"
    torn = encode_record(kmp[3]).encode("ascii")[:-9]  # killed while appending
    journal.path.write_bytes(whole + torn)
    with open_storage(f"sqlite:///{tmp_path / 'a.sqlite'}") as storage:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert journal.replay(storage) == 2
        assert list(storage.readings()) == kmp[:2]
    bad_line, torn_line = (r.getMessage() for r in caplog.records)
    assert "line 3 is not a record (values: not a finite number" in bad_line
    assert f"torn last line 4 ({len(torn)} bytes" in torn_line
    rejected = journal.path.with_name("spill.jsonl.rejected").read_bytes()
    assert rejected == json.dumps(bad).encode("ascii") + b"\n"


async def test_the_writer_spills_kmp_readings_a_full_database_refused(tmp_path: Path) -> None:
    journal = SpillJournal(tmp_path / "spill.jsonl")
    records = [kmp_reading("flat", 0), failure("flat", 1), kmp_reading("flat", 2)]
    with (
        ThreadPoolExecutor(max_workers=1) as executor,
        open_storage(full_sqlite(tmp_path / "r.sqlite")) as storage,
    ):
        for index in range(1000):  # the KMP table full too (its first page had room)
            try:
                storage.record([kmp_reading(FILLER, index)])
            except StorageError:
                break
        writer = BatchWriter(
            storage, [], executor, batch_size=2, retry_delay=0.01, retries=1, spill=journal
        )
        writer.start()
        for record in records:
            writer.put(record)
        await asyncio.wait_for(writer.close(), 20.0)
    assert (writer.stored, writer.spilled, writer.spilled_readings) == (0, 3, 2)
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:  # room again
        conn.execute("DELETE FROM readings WHERE meter = ?", (FILLER,))
        conn.execute("DELETE FROM kmp_readings WHERE meter = ?", (FILLER,))
    conn.close()
    with open_storage(f"sqlite:///{tmp_path / 'r.sqlite'}") as storage:
        assert journal.replay(storage) == 3
        assert list(storage.readings("flat")) == [records[0], records[2]]
        assert [_digits(r) for r in storage.readings("flat")] == [
            _digits(records[0]),
            _digits(records[2]),
        ]
