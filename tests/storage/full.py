"""A SQLite database that is full, the way a full disk leaves it (SQLITE_FULL)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from kamstrup382.errors import StorageError
from kamstrup382.storage.url import open_storage
from tests.storage.samples import reading

__all__ = ["FILLER", "full_sqlite"]

#: The meter of the rows that fill the database (delete them to make room).
FILLER = "filler"


def full_sqlite(path: Path) -> str:
    """The URL of a SQLite database at ``path`` that is full: capped (``max_page_count``) a few
    pages above its empty schema, then filled with readings of meter :data:`FILLER` until SQLite
    refuses one with ``database or disk is full`` (the error of a full disk).

    The filler's keys (meter, slot, time, rowid) sort before every sample record's, so a later
    insert appends to the same full B-tree leaf and fails too; deleting the filler makes room.
    """
    url = f"sqlite:///{path}"
    with open_storage(url):
        pass
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    capped = f"{url}?max_page_count={pages + 8}"
    earlier = timedelta(days=400)
    with open_storage(capped) as storage:
        for index in range(10_000):
            row = reading(FILLER, index)
            row = replace(row, slot=row.slot - earlier, read_at=row.read_at - earlier)
            try:
                storage.record([row])
            except StorageError as exc:
                assert "full" in str(exc)
                break
        else:
            raise AssertionError("the capped database never filled up")
    return capped
