"""Migration 10 (KMP readings): a version 9 database with readings, failures and outbox entries
in two queues comes through whole: nothing lost, every entry kept with its id, its queue and
its order, ids never handed out twice; then KMP readings queue behind them."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

from kamstrup382.storage.postgres import PostgresStorage
from kamstrup382.storage.sqlite import SqliteStorage
from kamstrup382.storage.url import open_storage, sqlite_path
from tests.storage.samples import failure, kmp_reading, reading

QUEUES = ("mqtt", "influxdb")


def _sql(url: str, query: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url)[0])
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url) as pg:
        return [tuple(row) for row in pg.execute(query).fetchall()]


def test_a_version_9_database_keeps_everything_through_migration_10(storage_url: str) -> None:
    old_readings = [reading(meter, i) for meter in ("house", "barn") for i in range(4)]
    gone = [reading("gone", i) for i in range(3)]  # queued, then published and removed
    with open_storage(storage_url, migrate=False) as fresh:
        assert isinstance(fresh, SqliteStorage | PostgresStorage)
        fresh.migrate(target=9)
        assert fresh.record(old_readings, [failure("house", 5)], outbox=QUEUES) == 8
        fresh.record(gone, outbox=("mqtt",))
        gone_ids = [r[0] for r in _sql(storage_url, "SELECT id FROM outbox WHERE meter = 'gone'")]
        fresh.outbox_done(gone_ids, output="mqtt")
        assert fresh.schema_version() == 9
    before = _sql(storage_url, "SELECT id, reading_id, meter, output FROM outbox ORDER BY id")
    claims = _sql(storage_url, "SELECT output, meter FROM outbox_claims ORDER BY 1, 2")
    assert len(before) == 16

    with open_storage(storage_url) as storage:
        assert isinstance(storage, SqliteStorage | PostgresStorage)
        assert storage.schema_version() == 10
        kept = _sql(storage_url, "SELECT id, reading_id, meter, output FROM outbox ORDER BY id")
        assert kept == before
        assert _sql(storage_url, "SELECT output, meter FROM outbox_claims ORDER BY 1, 2") == claims
        stored = list(storage.readings())
        assert sorted(stored, key=lambda r: (r.meter, r.slot)) == sorted(
            [*old_readings, *gone], key=lambda r: (r.meter, r.slot)
        )
        assert [f.kind for f in storage.failures()] == ["timeout"]
        for output in QUEUES:
            items = storage.outbox_pending(100, output=output)
            assert [(i, r.meter) for i, r in items] == [
                (row[0], row[2]) for row in before if row[3] == output
            ]
            assert [r for _, r in items] == old_readings  # queued in the order stored
        # new entries come after every id ever handed out, the removed ones included
        storage.record([kmp_reading("flat", 0)], outbox=QUEUES)
        items = storage.outbox_pending(100, output="mqtt")
        assert items[-1][1] == kmp_reading("flat", 0)
        assert items[-1][0] > max(gone_ids)


def test_an_outbox_entry_points_at_exactly_one_reading(storage_url: str) -> None:
    with open_storage(storage_url) as storage:
        storage.record([reading("house", 0)])
        storage.record([kmp_reading("flat", 0)])
    for ids in ("NULL, NULL", "1, 1"):
        query = (
            "INSERT INTO outbox (reading_id, kmp_reading_id, meter, output) "
            f"VALUES ({ids}, 'x', 'mqtt')"
        )
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.CheckViolation)):
            _sql(storage_url, query)
