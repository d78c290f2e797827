"""Schema versions: a database of an older version is brought up to date on open, data kept."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import psycopg
import pytest

from kamstrup382.errors import StorageError
from kamstrup382.storage import Storage
from kamstrup382.storage.postgres import PostgresStorage
from kamstrup382.storage.sqlite import SCHEMA_VERSION, SqliteStorage
from kamstrup382.storage.url import open_storage, sqlite_path
from tests.storage.samples import START, reading

# one reading as version 1 of each schema stores it, written with plain SQL
V1_SQLITE = """INSERT INTO readings VALUES (1, 'old', {slot}, {read_at}, '00000042', 9999999, 1,
    2, 3, 4, 183, 9999999, 'KAM 685-382-OK-15', '685-382-OK-15', 'sum7', x'2f4b414d', 0.5,
    4.25, 2)"""
V1_POSTGRES = """INSERT INTO readings VALUES (DEFAULT, 'old', %(slot)s, %(read_at)s, '00000042',
    9999999, 1, 2, 3, 4, 18.3, 999999.9, 'KAM 685-382-OK-15', '685-382-OK-15', 'sum7',
    '\\x2f4b414d', 0.5, 4.25, 2)"""


def _backend(storage: Storage) -> SqliteStorage | PostgresStorage:
    assert isinstance(storage, SqliteStorage | PostgresStorage)
    return storage


def _write_v1_row(url: str) -> None:
    slot, read_at = START, START + timedelta(seconds=2)
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url)[0])
        try:
            micros = {
                "slot": int(slot.timestamp() * 1e6),
                "read_at": int(read_at.timestamp() * 1e6),
            }
            conn.execute(V1_SQLITE.format(**micros))
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(url) as pg:
            pg.execute(V1_POSTGRES, {"slot": slot, "read_at": read_at})


def test_an_old_schema_is_migrated_on_open(storage_url: str) -> None:
    with open_storage(storage_url, migrate=False) as fresh:
        old = _backend(fresh)
        assert old.schema_version() == 0
        old.migrate(target=1)
        assert old.schema_version() == 1
    _write_v1_row(storage_url)
    with open_storage(storage_url) as storage:
        assert _backend(storage).schema_version() == SCHEMA_VERSION
        [kept] = storage.readings()
        assert kept.meter == "old"
        assert kept.values.energy == 9999999
        assert str(kept.values.actual_peak) == "18.3"
        assert str(kept.values.last_month_peak) == "999999.9"
        assert kept.raw == b"/KAM"
        # what later versions added works on the migrated database
        assert storage.record([reading("new", 1)], outbox=True) == 1
        assert [item[1].meter for item in storage.outbox_pending()] == ["new"]
        assert storage.claim("c", ["new", "other"], START, timedelta(minutes=1)) == ["new", "other"]
    with open_storage(storage_url) as again:  # migrating is idempotent
        assert _backend(again).schema_version() == SCHEMA_VERSION
        assert len(list(again.readings())) == 2


def test_a_newer_schema_is_refused(storage_url: str) -> None:
    with open_storage(storage_url) as storage:
        storage.record([reading()])
    if storage_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(storage_url)[0])
        conn.execute("INSERT INTO schema_version VALUES (999)")
        conn.commit()
        conn.close()
    else:
        with psycopg.connect(storage_url) as pg:
            pg.execute("INSERT INTO schema_version VALUES (999)")
    with pytest.raises(StorageError, match="newer than this program"):
        open_storage(storage_url)


def test_a_version_3_outbox_is_claimable_after_the_upgrade(storage_url: str) -> None:
    """Entries queued before the outbox had claims (version 3) keep their order and become
    claimable per meter by version 4."""
    with open_storage(storage_url, migrate=False) as fresh:
        _backend(fresh).migrate(target=3)
    _write_v1_row(storage_url)  # the reading of meter "old", id 1
    if storage_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(storage_url)[0])
        try:
            conn.execute("INSERT INTO outbox (reading_id) VALUES (1)")
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(storage_url) as pg:
            pg.execute("INSERT INTO outbox (reading_id) SELECT id FROM readings")
    with open_storage(storage_url) as storage:
        assert _backend(storage).schema_version() == SCHEMA_VERSION >= 4
        storage.record([reading("new", 1)], outbox=True)
        [(_, held)] = storage.outbox_pending(1, holder="a", lease=timedelta(minutes=1))
        assert held.meter == "old"  # the oldest first, and claimed: b gets only the other meter
        [(_, other)] = storage.outbox_pending(10, holder="b", lease=timedelta(minutes=1))
        assert other.meter == "new"
        storage.outbox_release("a")
        assert [r.meter for _, r in storage.outbox_pending(10, holder="c")] == ["old"]
