"""The InfluxDB output against a real InfluxDB 1.x on loopback: readings land at their own time
with their values, outages lose and double nothing, bad data is logged and does not block,
authentication and TLS.

Readings go through the storage as the collector's writer sends them: stored and queued for the
``influxdb`` output in one transaction, then handed to ``publish``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.storage import ReadingRecord, Storage
from tests.fixtures.influxdb import InfluxServer

from .helpers import PATIENCE, reading

QUERY = "SELECT * FROM kamstrup382 GROUP BY *"


def make_output(server: InfluxServer, **extra: Any) -> InfluxOutput:
    section: dict[str, Any] = {
        "url": server.url,
        "database": "k382",
        "client_id": "k382-test",
        "retry_delay": 0.05,
        "retry_max": 0.2,
        "timeout": 5,
        **extra,
    }
    return InfluxOutput.from_config(section)


async def store_and_publish(
    storage: Storage, output: InfluxOutput, readings: Sequence[ReadingRecord]
) -> None:
    """What the collector's writer does with one batch."""
    await asyncio.to_thread(storage.record, readings, outbox=[output.name])
    await output.publish(readings, [])


async def drained(storage: Storage, output: str = "influxdb") -> None:
    """Wait until the output's queue is empty: InfluxDB acknowledged every reading so far."""

    async def empty() -> None:
        while (await asyncio.to_thread(storage.outbox_backlog, output))[0]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    await asyncio.wait_for(empty(), PATIENCE)


def nanoseconds(record: ReadingRecord) -> int:
    return int(record.read_at.timestamp()) * 10**9 + record.read_at.microsecond * 1000


async def test_readings_land_at_their_own_time_with_their_values(
    influxdb: InfluxServer, storage: Storage
) -> None:
    output = make_output(influxdb, tags={"site": "home"})
    await output.start(storage)
    try:
        readings = [reading("house", i) for i in range(3)] + [reading("flat.2", 0)]
        await store_and_publish(storage, output, readings)
        await drained(storage)
    finally:
        await output.stop()
    rows = influxdb.rows(QUERY, "k382")
    assert len(rows) == 4
    by_key = {(row["meter"], row["time"]): row for row in rows}
    for record in readings:
        row = by_key[(record.meter, nanoseconds(record))]  # its own read_at, to the microsecond
        values = record.values
        assert row["energy_kwh"] == int(values.energy)
        assert row["tariff_1_kwh"] == int(values.tariff_1)
        assert row["tariff_2_kwh"] == int(values.tariff_2)
        assert row["hour_counter_h"] == int(values.hour_counter)
        assert row["pulse_input"] == int(values.pulse_input)
        assert row["actual_peak_w"] == int(values.actual_peak * 1000)
        assert row["last_month_peak_w"] == 17000
        assert row["answer_delay_s"] == record.answer_delay
        assert row["duration_s"] == record.duration
        assert row["attempts"] == 1
        assert row["customer_number"] == values.customer_number
        assert row["type_number"] == record.type_number
        assert row["site"] == "home"
    # the registers are integers to InfluxDB
    types = {v[0]: v[1] for s in influxdb.query("SHOW FIELD KEYS", "k382") for v in s["values"]}
    assert types["energy_kwh"] == types["actual_peak_w"] == types["attempts"] == "integer"
    assert types["duration_s"] == "float"
    assert output.health().counters["written"] == 4
    assert output.state == "stopped"


async def test_the_same_reading_written_twice_is_one_point(
    influxdb: InfluxServer, storage: Storage, tmp_path: Path
) -> None:
    """A write whose answer was lost is written again: InfluxDB keeps one point."""
    readings = [reading("house", i) for i in range(5)]
    for _ in range(2):
        output = make_output(influxdb)
        await output.start(storage)
        try:
            await store_and_publish(storage, output, readings)
            await drained(storage)
        finally:
            await output.stop()
        # queue them all again, as if InfluxDB's answers had been lost
        with sqlite3.connect(tmp_path / "readings.sqlite") as conn:
            conn.execute(
                "INSERT INTO outbox (reading_id, meter, output) "
                "SELECT id, meter, 'influxdb' FROM readings ORDER BY id"
            )
    assert output.health().counters["written"] == 5
    rows = influxdb.rows(QUERY, "k382")
    assert sorted(row["time"] for row in rows) == [nanoseconds(r) for r in readings]


async def test_a_refused_reading_is_logged_and_does_not_block_the_rest(
    influxdb: InfluxServer, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """Readings older than the retention policy are refused (HTTP 400, partial write): each
    is logged with InfluxDB's message and taken out of the queue; the recent ones, queued
    before and after them, are written."""
    influxdb.query("CREATE RETENTION POLICY day ON k382 DURATION 1d REPLICATION 1 DEFAULT")
    now = datetime.now(UTC)
    old = [reading("house", i) for i in range(3)]  # March 2026: beyond one day
    recent = [
        dataclasses.replace(reading("house", 10 + i), read_at=now - timedelta(minutes=10 - i))
        for i in range(5)
    ]
    output = make_output(influxdb)
    await output.start(storage)
    try:
        with caplog.at_level(logging.ERROR, "kamstrup382.outputs.influxdb"):
            await store_and_publish(storage, output, recent[:2] + old + recent[2:])
            await drained(storage)
    finally:
        await output.stop()
    assert output.health().counters["rejected"] == 3
    assert output.health().counters["written"] == 5
    assert caplog.text.count("beyond retention policy") == 3
    for record in old:
        assert f"slot {record.slot.isoformat()}" in caplog.text
    rows = influxdb.rows(QUERY, "k382")
    assert sorted(row["time"] for row in rows) == [nanoseconds(r) for r in recent]
    assert len(list(storage.readings())) == 8  # every reading stays in the storage


async def wait_for_state(output: InfluxOutput, state: str) -> None:
    async def reached() -> None:
        while output.state != state:  # noqa: ASYNC110 - a poll
            await asyncio.sleep(0.02)

    await asyncio.wait_for(reached(), PATIENCE)


def count(server: InfluxServer) -> int:
    series = server.query("SELECT count(energy_kwh) FROM kamstrup382", "k382")
    return int(series[0]["values"][0][1]) if series else 0


async def test_an_outage_loses_nothing_and_doubles_nothing(
    influxdb: InfluxServer, storage: Storage
) -> None:
    readings = [reading(meter, i) for i in range(40) for meter in ("house", "shed")]
    output = make_output(influxdb)
    await output.start(storage)
    try:
        await store_and_publish(storage, output, readings[:10])
        await drained(storage)
        influxdb.stop()  # down for a while: the readings of several batches wait in the queue
        for start in range(10, 60, 10):
            await store_and_publish(storage, output, readings[start : start + 10])
        await wait_for_state(output, "unreachable")
        assert output.health().detail
        assert storage.outbox_backlog("influxdb") == (50, readings[10].read_at)
        influxdb.start()
        await store_and_publish(storage, output, readings[60:])
        await drained(storage)
        assert output.state == "connected"
    finally:
        await output.stop()
    rows = influxdb.rows(QUERY, "k382")
    assert sorted((row["meter"], row["time"]) for row in rows) == sorted(
        (r.meter, nanoseconds(r)) for r in readings
    )
    assert output.health().counters["failures"] >= 1


@pytest.mark.slow
async def test_a_server_killed_mid_backlog_loses_nothing_and_doubles_nothing(
    influxdb: InfluxServer, storage: Storage
) -> None:
    """SIGKILL while a backlog is being written, then a restart: every reading once."""
    total = 20_000
    readings = [reading(f"m{i % 50:02d}", i // 50) for i in range(total)]
    await asyncio.to_thread(storage.record, readings, outbox=["influxdb"])
    output = make_output(influxdb, batch_size=500)
    await output.start(storage)
    try:
        await output.publish(readings, [])

        async def some_written() -> None:
            while output.written == 0:  # noqa: ASYNC110 - a poll
                await asyncio.sleep(0.005)

        await asyncio.wait_for(some_written(), PATIENCE)
        influxdb.kill()
        await wait_for_state(output, "unreachable")
        left = (await asyncio.to_thread(storage.outbox_backlog, "influxdb"))[0]
        assert 0 < left < total
        influxdb.start()
        await drained(storage)
    finally:
        await output.stop()
    assert count(influxdb) == total
    times = {(row["meter"], row["time"]) for row in influxdb.rows(QUERY, "k382")}
    assert times == {(r.meter, nanoseconds(r)) for r in readings}


async def test_credentials_are_sent_and_a_refusal_keeps_the_readings(
    influxdb_auth: InfluxServer, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    server = influxdb_auth
    server.query("CREATE USER k382 WITH PASSWORD 'wr1te-only'")
    server.query("GRANT WRITE ON k382 TO k382")
    readings = [reading("house", i) for i in range(4)]
    wrong = make_output(server, username="k382", password="not-it", login_retry=60)
    await wrong.start(storage)
    try:
        with caplog.at_level(logging.DEBUG):
            await store_and_publish(storage, wrong, readings[:2])
            await wait_for_state(wrong, "login_refused")
    finally:
        await wrong.stop()
    assert wrong.health().counters["login_refusals"] == 1  # and no hammering: one minute's wait
    assert "authorization failed" in caplog.text
    assert "not-it" not in caplog.text  # the password is never logged
    assert storage.outbox_backlog("influxdb")[0] == 2  # nothing left the queue
    anonymous = make_output(server)
    await anonymous.start(storage)
    try:
        await wait_for_state(anonymous, "login_refused")
    finally:
        await anonymous.stop()
    right = make_output(server, username="k382", password="wr1te-only")
    await right.start(storage)
    try:
        await store_and_publish(storage, right, readings[2:])
        await drained(storage)
    finally:
        await right.stop()
    assert "wr1te-only" not in repr(right.settings)
    assert sorted(row["time"] for row in server.rows(QUERY, "k382")) == [
        nanoseconds(r) for r in readings
    ]


async def test_tls_with_the_servers_ca(influxdb_tls: InfluxServer, storage: Storage) -> None:
    server = influxdb_tls
    assert server.url.startswith("https://localhost:")
    untrusted = make_output(server)  # the system's CAs do not know the test CA
    await untrusted.start(storage)
    try:
        await store_and_publish(storage, untrusted, [reading("house", 0)])
        await wait_for_state(untrusted, "unreachable")
        assert "certificate" in (untrusted.health().detail or "").lower()
    finally:
        await untrusted.stop()
    assert storage.outbox_backlog("influxdb")[0] == 1
    trusted = make_output(server, ca_file=str(server.ca_file))
    await trusted.start(storage)
    try:
        await store_and_publish(storage, trusted, [reading("house", 1)])
        await drained(storage)
    finally:
        await trusted.stop()
    unchecked = make_output(server, verify=False)
    await unchecked.start(storage)
    try:
        await store_and_publish(storage, unchecked, [reading("house", 2)])
        await drained(storage)
    finally:
        await unchecked.stop()
    assert len(server.rows(QUERY, "k382")) == 3


async def test_a_missing_database_keeps_the_readings_until_it_exists(
    influxdb: InfluxServer, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """404 "database not found" is not bad data: nothing leaves the queue, the output tries
    again with backoff, and writes everything once the database is created."""
    output = make_output(influxdb, database="later")
    await output.start(storage)
    try:
        await wait_for_state(output, "connected")  # /ping answers before anything is written
        with caplog.at_level(logging.WARNING, "kamstrup382.outputs.influxdb"):
            await store_and_publish(storage, output, [reading("house", i) for i in range(3)])
            await wait_for_state(output, "unreachable")
        assert "database not found" in (output.health().detail or "")
        assert "database not found" in caplog.text
        assert storage.outbox_backlog("influxdb")[0] == 3
        influxdb.query("CREATE DATABASE later")
        await drained(storage)
        assert output.state == "connected"
    finally:
        await output.stop()
    assert output.health().counters["rejected"] == 0
    assert len(influxdb.rows(QUERY, "later")) == 3


async def test_a_batch_too_large_for_the_server_is_split(tmp_path: Path, storage: Storage) -> None:
    """InfluxDB answers 413 to a body over its ``max-body-size``: the output halves the batch
    until it fits, and writes everything, nothing refused."""
    with InfluxServer(tmp_path / "small", max_body_size=64 * 1024) as server:
        server.query("CREATE DATABASE k382")
        output = make_output(server, batch_size=2000)
        await output.start(storage)
        try:
            readings = [reading(f"m{i % 20}", i // 20) for i in range(2000)]
            await store_and_publish(storage, output, readings)
            await drained(storage)
        finally:
            await output.stop()
        assert count(server) == 2000
    counters = output.health().counters
    assert counters["rejected"] == 0
    assert counters["written"] == 2000
    # 2000 points of ~330 bytes: refused whole and in halves down to 16 bodies of 125 that fit
    assert counters["requests"] == 1 + 2 + 4 + 8 + 16
