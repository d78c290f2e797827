"""Every dialect in one readings table (migration 9): a 382C's tariffs 3 and 4 and its
three-decimal peak kept exactly, a register a meter does not have stored as NULL (never 0),
and a database of version 5 brought up to it with its readings and its outbox kept."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from kamstrup382.errors import StorageError
from kamstrup382.protocol import MeterValues
from kamstrup382.storage import ReadingRecord
from kamstrup382.storage.sqlite import SCHEMA_VERSION
from kamstrup382.storage.url import open_storage, sqlite_path
from tests.storage.samples import reading
from tests.storage.test_migrations import _backend, _write_v1_row

C_VALUES = MeterValues(
    customer_number="14410000",
    energy=Decimal(36886),
    tariff_1=Decimal(36880),
    tariff_2=Decimal(3),
    tariff_3=Decimal(2),
    tariff_4=Decimal(1),
    hour_counter=Decimal(119899),
    pulse_input=Decimal(0),
    actual_peak=Decimal("1.078"),
    last_month_peak=None,
)


def c_reading(index: int = 0) -> ReadingRecord:
    return replace(
        reading("382c", index),
        values=C_VALUES,
        identification="KAM 68438BC450000",
        type_number=None,
    )


def _columns(url: str, sql: str) -> tuple[object, ...]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url)[0])
        try:
            row: tuple[object, ...] = conn.execute(sql).fetchone()
        finally:
            conn.close()
        return row
    with psycopg.connect(url) as pg:
        found = pg.execute(sql).fetchone()
        assert found is not None
        return tuple(found)


def _execute(url: str, *statements: str) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url)[0])
        try:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
        return
    with psycopg.connect(url) as pg:
        for statement in statements:
            pg.execute(statement)


def test_a_382c_and_a_685_382_in_one_table(storage_url: str) -> None:
    with open_storage(storage_url) as storage:
        assert storage.record([reading("685", 0), c_reading(0)]) == 2
        by_meter = {r.meter: r for r in storage.readings()}
    c, old = by_meter["382c"].values, by_meter["685"].values
    assert c == C_VALUES
    assert str(c.actual_peak) == "1.078"  # the 382C's three decimals, as printed
    assert (c.tariff_3, c.tariff_4, c.last_month_peak) == (2, 1, None)
    assert str(old.actual_peak) == "12.3"  # the 685-382's one decimal, as printed
    assert (old.tariff_3, old.tariff_4) == (None, None)
    # NULL, never 0, for what a meter does not have
    row = _columns(
        storage_url,
        "SELECT tariff_3, tariff_4, last_month_peak FROM readings WHERE meter = '382c'",
    )
    assert row == (2, 1, None)
    row = _columns(storage_url, "SELECT tariff_3, tariff_4 FROM readings WHERE meter = '685'")
    assert row == (None, None)


def test_the_checks_still_hold(storage_url: str) -> None:
    with open_storage(storage_url) as storage:
        storage.record([c_reading(0)])
    bad = "UPDATE readings SET tariff_3 = -1"
    if storage_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(storage_url)[0])
        try:
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                conn.execute(bad)
            with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
                conn.execute("UPDATE readings SET tariff_1 = NULL")
        finally:
            conn.close()
    else:
        with psycopg.connect(storage_url) as pg, pytest.raises(psycopg.errors.CheckViolation):
            pg.execute(bad)
        with psycopg.connect(storage_url) as pg, pytest.raises(psycopg.errors.NotNullViolation):
            pg.execute("UPDATE readings SET tariff_1 = NULL")


def test_a_version_5_database_is_rebuilt_with_its_readings_and_outbox(storage_url: str) -> None:
    with open_storage(storage_url, migrate=False) as fresh:
        _backend(fresh).migrate(target=5)
    _write_v1_row(storage_url)  # meter "old": actual peak 18.3, last month's 999999.9
    _execute(
        storage_url,
        "INSERT INTO outbox (reading_id, meter) SELECT id, meter FROM readings",
        "INSERT INTO outbox_claims (meter) VALUES ('old')",
    )
    with open_storage(storage_url) as storage:
        assert _backend(storage).schema_version() == SCHEMA_VERSION >= 9
        [kept] = storage.readings()
        assert str(kept.values.actual_peak) == "18.3"
        assert str(kept.values.last_month_peak) == "999999.9"
        assert (kept.values.tariff_3, kept.values.tariff_4) == (None, None)
        # the outbox entry survived the rebuild of the table it refers to
        [(_, queued)] = storage.outbox_pending(10, holder="a", lease=timedelta(minutes=1))
        assert queued.meter == "old"
        assert storage.record([c_reading(1)], outbox=True) == 1
        assert {r.meter for _, r in storage.outbox_pending(10, holder="a")} == {"old", "382c"}
    if storage_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(storage_url)[0])
        try:
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            indexes = {
                r[0]
                for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'readings'")
            }
            assert {"readings_meter_read_at", "readings_read_at"} <= indexes
            assert conn.execute(
                "SELECT actual_peak FROM readings WHERE meter = 'old'"
            ).fetchone() == (18300,)
        finally:
            conn.close()


def test_a_382c_reading_into_a_version_5_database_is_refused(storage_url: str) -> None:
    with open_storage(storage_url, migrate=False) as fresh:
        _backend(fresh).migrate(target=5)
        with pytest.raises(StorageError):
            fresh.record([c_reading(0)])
