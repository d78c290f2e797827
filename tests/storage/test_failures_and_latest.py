"""The failures with the bytes they were refused for, and the newest reading of many meters in
one query (the collector's history at start), on both backends."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest

from kamstrup382.storage import Storage
from kamstrup382.storage.sql import SqlStorage
from kamstrup382.storage.sqlite import SCHEMA_VERSION
from kamstrup382.storage.url import open_storage, sqlite_path
from tests.storage.samples import START, STEP, failure, reading

#: A refused telegram: every control character and a byte of each kind of the 7-bit range.
REFUSED = b"/KAM5 685-382-OK-15\r\n\x020.0(00012345)\r\n1.20(0000035*kWh)\r\n!\r\n\x03\x7f"


def test_a_failure_keeps_its_raw_bytes(storage: Storage) -> None:
    implausible = replace(failure("house", 1, "implausible"), raw=REFUSED)
    storage.record([], [failure("house", 0), implausible, failure("barn", 1)])
    back = list(storage.failures())
    assert [(f.meter, f.kind, f.raw) for f in back] == [
        ("barn", "timeout", None),
        ("house", "timeout", None),
        ("house", "implausible", REFUSED),
    ]
    assert back[2] == implausible
    # filtered like the readings: by meter and a half-open range of failed_at
    since = START + STEP
    assert list(storage.failures("house", since=since)) == [implausible]
    assert list(storage.failures("house", until=since)) == [failure("house", 0)]
    # the status still names the newest failure's kind
    [_, house] = storage.status()
    assert (house.last_error_kind, house.failures) == ("implausible", 2)


def test_the_latest_reading_of_many_meters_in_one_query(storage: Storage) -> None:
    names = [f"m{i:04d}" for i in range(1500)]
    # stored out of order: the newest by read_at wins, not the last stored
    storage.record([reading(name, 2) for name in names[:1000]])
    storage.record([reading(name, 1) for name in names[:1000]] + [reading("odd", 0)])
    storage.record([], [failure("broken", 0)])
    latest = storage.latest_readings([*names, "odd", "broken", "odd"])
    assert sorted(latest) == sorted([*names[:1000], "odd"])
    assert latest["m0007"] == reading("m0007", 2)
    assert latest["odd"] == storage.latest("odd") == reading("odd", 0)
    assert storage.latest_readings([]) == {}
    assert storage.latest_readings(["nobody"]) == {}


def test_the_latest_reading_is_one_statement(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 meters must not be 10,000 queries: the SQL backends count their statements."""
    assert isinstance(storage, SqlStorage)
    storage.record([reading(f"m{i}", 0) for i in range(300)])
    calls = 0
    locked = storage._locked

    def counting(what: str, fn: object) -> object:
        nonlocal calls
        calls += 1
        return locked(what, fn)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "_locked", counting)
    assert len(storage.latest_readings([f"m{i}" for i in range(300)])) == 300
    assert calls == 1


def test_version_4_failures_are_kept_and_new_ones_keep_their_bytes(storage_url: str) -> None:
    with open_storage(storage_url, migrate=False) as fresh:
        assert isinstance(fresh, SqlStorage)
        fresh.migrate(target=4)
    old = (START, START + timedelta(seconds=2))
    sql = (
        "INSERT INTO failures (meter, slot, failed_at, kind, message, attempts, duration) "
        "VALUES ('old', {p}, {p}, 'usage', 'register 1.20 missing', 1, 0.5)"
    )
    if storage_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(storage_url)[0])
        try:
            conn.execute(sql.format(p="?"), [int(t.timestamp() * 1e6) for t in old])
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(storage_url) as pg:
            pg.execute(sql.format(p="%s"), old)
    with open_storage(storage_url) as storage:
        assert isinstance(storage, SqlStorage)
        assert storage.schema_version() == SCHEMA_VERSION >= 5
        [kept] = storage.failures()
        assert (kept.meter, kept.kind, kept.raw, kept.failed_at) == ("old", "usage", None, old[1])
        storage.record([], [replace(failure("new", 0, "implausible"), raw=REFUSED)])
        assert [f.raw for f in storage.failures("new")] == [REFUSED]
