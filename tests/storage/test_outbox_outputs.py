"""One outbox queue per output (schema version 7): MQTT and InfluxDB each drain their own, and
neither holds back the other. Runs on both backends."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import psycopg
import pytest

from kamstrup382.storage import MQTT_QUEUE, Storage
from kamstrup382.storage.base import outbox_names
from kamstrup382.storage.postgres import PostgresStorage
from kamstrup382.storage.sqlite import SqliteStorage
from kamstrup382.storage.url import open_storage, sqlite_path
from tests.storage.samples import START, reading

LONG = timedelta(minutes=5)
BOTH = ("mqtt", "influxdb")


def test_each_output_gets_every_new_reading_in_its_own_queue(storage: Storage) -> None:
    assert storage.record([reading("a", 0), reading("b", 0)], outbox=BOTH) == 2
    assert storage.record([reading("a", 0), reading("a", 1)], outbox=BOTH) == 1  # a/0 is old
    storage.record([reading("c", 0)], outbox=["influxdb"])
    storage.record([reading("d", 0)])  # no queue at all
    mqtt = storage.outbox_pending(100, output="mqtt")
    influx = storage.outbox_pending(100, output="influxdb")
    assert [(r.meter, r.slot) for _, r in mqtt] == [
        ("a", START),
        ("b", START),
        ("a", START + timedelta(minutes=15)),
    ]
    assert [r.meter for _, r in influx] == ["a", "b", "a", "c"]
    assert not {i for i, _ in mqtt} & {i for i, _ in influx}  # entries of their own
    assert storage.outbox_pending(100) == mqtt  # naming none means MQTT's queue
    assert storage.outbox_pending(100, output="other") == []
    assert storage.outbox_backlog("mqtt")[0] == 3
    count, oldest = storage.outbox_backlog("influxdb")
    assert (count, oldest) == (4, reading("a", 0).read_at)
    assert storage.outbox_backlog("other") == (0, None)


def test_one_queue_drained_leaves_the_other_as_it_was(storage: Storage) -> None:
    storage.record([reading(m, i) for i in range(3) for m in ("a", "b")], outbox=BOTH)
    # the same holder name on both queues: claims are per (output, meter)
    held = storage.outbox_pending(100, holder="me", lease=LONG, output="influxdb")
    assert len(held) == 6
    assert len(storage.outbox_pending(100, holder="me", lease=LONG, output="mqtt")) == 6
    storage.outbox_release("me", output="mqtt")  # gives back MQTT's claims only
    assert storage.outbox_pending(100, holder="other", lease=LONG, output="influxdb") == []
    assert len(storage.outbox_pending(100, holder="other", lease=LONG, output="mqtt")) == 6
    # influxdb is done: its entries go, MQTT's stay, whatever ids are given
    storage.outbox_done([i for i, _ in held], holder="me", output="influxdb")
    assert storage.outbox_pending(100, output="influxdb") == []
    assert len(storage.outbox_pending(100, output="mqtt")) == 6
    mqtt_ids = [i for i, _ in storage.outbox_pending(100, output="mqtt")]
    storage.outbox_done(mqtt_ids, output="influxdb")  # not its entries: nothing removed
    assert [i for i, _ in storage.outbox_pending(100, output="mqtt")] == mqtt_ids
    # a new reading after influxdb caught up waits in both again
    storage.record([reading("a", 9)], outbox=BOTH)
    assert [r.meter for _, r in storage.outbox_pending(100, output="influxdb")] == ["a"]
    assert len(storage.outbox_pending(100, output="mqtt")) == 7


def test_the_queue_names_are_checked() -> None:
    assert outbox_names(True) == (MQTT_QUEUE,)
    assert outbox_names(False) == ()
    assert outbox_names(["influxdb", "mqtt", "influxdb"]) == ("influxdb", "mqtt")
    with pytest.raises(TypeError):
        outbox_names("mqtt")


#: A reading as the version 5 table holds it (in SQLite the peaks in tenths of a kW).
V5_SQLITE = """INSERT INTO readings VALUES (NULL, ?, ?, ?, '00000042', 1500, 1000, 500, 3, 4,
    183, 170, 'KAM 685-382-OK-15', '685-382-OK-15', 'sum7', x'2f4b414d', 0.5, 4.25, 1)"""
V5_POSTGRES = """INSERT INTO readings VALUES (DEFAULT, %s, %s, %s, '00000042', 1500, 1000, 500,
    3, 4, 18.3, 17.0, 'KAM 685-382-OK-15', '685-382-OK-15', 'sum7', '\\x2f4b414d', 0.5, 4.25,
    1)"""


def test_a_version_5_outbox_becomes_the_mqtt_queue(storage_url: str) -> None:
    """Entries and claims of the one outbox before version 7 keep their place in MQTT's
    queue: the same ids, the same order, a claim still held by its holder."""
    with open_storage(storage_url, migrate=False) as fresh:
        backend = fresh
        assert isinstance(backend, SqliteStorage | PostgresStorage)
        backend.migrate(target=5)
    # readings as version 5 stored them (its table, not today's), queued as version 5 did it,
    # and a holder had claimed meter a
    rows = [(m, START + timedelta(minutes=15 * i)) for i in range(2) for m in ("a", "b")]
    queue = (
        "INSERT INTO outbox (reading_id, meter) SELECT id, meter FROM readings ORDER BY id",
        "INSERT INTO outbox_claims (meter) SELECT DISTINCT meter FROM outbox",
    )
    if storage_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(storage_url)[0])
        try:
            for meter, slot in rows:
                at = int(slot.timestamp() * 1e6)
                conn.execute(V5_SQLITE, (meter, at, at + 2_000_000))
            for statement in queue:
                conn.execute(statement)
            before = [row[0] for row in conn.execute("SELECT id FROM outbox ORDER BY id")]
            conn.execute(
                "UPDATE outbox_claims SET holder = 'old', expires_at = ? WHERE meter = 'a'",
                (2**62,),
            )
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(storage_url) as pg:
            for meter, slot in rows:
                pg.execute(V5_POSTGRES, (meter, slot, slot + timedelta(seconds=2)))
            for statement in queue:
                pg.execute(statement)
            before = [row[0] for row in pg.execute("SELECT id FROM outbox ORDER BY id")]
            pg.execute(
                "UPDATE outbox_claims SET holder = 'old', expires_at = now() + interval '1 hour' "
                "WHERE meter = 'a'"
            )
    assert len(before) == 4
    with open_storage(storage_url) as storage:
        assert [i for i, _ in storage.outbox_pending(100, output="mqtt")] == before
        assert storage.outbox_pending(100, output="influxdb") == []
        # a is still held by "old": another holder gets b only
        got = storage.outbox_pending(100, holder="new", lease=LONG, output="mqtt")
        assert {r.meter for _, r in got} == {"b"}
        assert len(storage.outbox_pending(100, holder="old", lease=LONG, output="mqtt")) == 2
        # and new readings are queued per output from now on
        storage.record([reading("a", 5)], outbox=BOTH)
        assert [r.meter for _, r in storage.outbox_pending(100, output="influxdb")] == ["a"]
