"""The outbox shared by several publishers: claims per meter, order per meter, expiry, release.

Runs on both backends (a SQLite file may be shared by processes of one machine too).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import timedelta

import pytest

from kamstrup382.errors import StorageError
from kamstrup382.storage import Storage
from kamstrup382.storage.base import outbox_window
from kamstrup382.storage.url import open_storage
from tests.storage.samples import START, reading

LONG = timedelta(minutes=5)


def queue(storage: Storage, meters: list[str], slots: range) -> list[tuple[str, int]]:
    """Store readings of ``meters`` slot by slot, queued in the outbox; return (meter, slot)
    in the order they were queued."""
    order = []
    for index in slots:
        storage.record([reading(m, index) for m in meters], outbox=True)
        order += [(m, index) for m in meters]
    return order


def test_a_holder_gets_whole_meters_oldest_first_and_others_the_rest(storage: Storage) -> None:
    queue(storage, ["m0", "m1", "m2", "m3"], range(3))
    # two meters at most, the two whose first entry is oldest; two entries at most, in order
    got_a = storage.outbox_pending(2, holder="a", lease=LONG)
    assert [(r.meter, r.slot) for _, r in got_a] == [("m0", START), ("m1", START)]
    # b never sees a meter a holds, whatever the limit
    got_b = storage.outbox_pending(100, holder="b", lease=LONG)
    assert {r.meter for _, r in got_b} == {"m2", "m3"}
    assert [i for i, _ in got_b] == sorted(i for i, _ in got_b)
    assert len(got_b) == 6
    assert storage.outbox_pending(100, holder="c", lease=LONG) == []
    # a asks again before it is done: its own meters come back (renewed), from the oldest
    again = storage.outbox_pending(100, holder="a", lease=LONG)
    assert {r.meter for _, r in again} == {"m0", "m1"}
    assert [i for i, _ in again][: len(got_a)] == [i for i, _ in got_a]
    # done: a's published entries are gone and its claims given back
    storage.outbox_done([i for i, _ in again[:4]], holder="a")
    rest = storage.outbox_pending(100, holder="c", lease=LONG)
    assert [i for i, _ in rest] == [i for i, _ in again[4:]]
    # the peek without a holder sees everything still waiting, claimed or not
    assert len(storage.outbox_pending(100)) == len(again) - 4 + len(got_b)


def test_released_and_expired_claims_are_taken_over(storage: Storage) -> None:
    queue(storage, ["m0", "m1"], range(2))
    short = timedelta(milliseconds=300)
    held = storage.outbox_pending(10, holder="a", lease=short)
    assert len(held) == 4
    assert storage.outbox_pending(10, holder="b", lease=LONG) == []
    time.sleep(0.5)  # a died: its claims expire and b takes the meters over, nothing removed
    taken = storage.outbox_pending(10, holder="b", lease=LONG)
    assert [i for i, _ in taken] == [i for i, _ in held]
    assert storage.outbox_pending(10, holder="a", lease=short) == []
    storage.outbox_release("b")  # b failed to publish: it gives them back at once
    assert [i for i, _ in storage.outbox_pending(10, holder="a", lease=LONG)] == [
        i for i, _ in held
    ]
    with pytest.raises(StorageError, match="lease"):
        storage.outbox_pending(10, holder="a", lease=timedelta(0))


def test_concurrent_publishers_take_each_entry_once_and_in_order_per_meter(
    storage_url: str,
) -> None:
    meters = [f"m{i:02d}" for i in range(12)]
    stores = [open_storage(storage_url) for _ in range(3)]
    try:
        queued = queue(stores[0], meters, range(20))
        published: list[tuple[int, str]] = []  # (outbox id, meter) in the order "published"
        lock = threading.Lock()

        def publisher(index: int, storage: Storage) -> None:
            me = f"p{index}"
            idle = 0
            while idle < 3:
                items = storage.outbox_pending(7, holder=me, lease=LONG)
                if not items:
                    idle += 1
                    time.sleep(0.01)
                    continue
                idle = 0
                with lock:
                    published.extend((i, r.meter) for i, r in items)
                storage.outbox_done([i for i, _ in items], holder=me)

        threads = [threading.Thread(target=publisher, args=(i, s)) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores:
            s.close()
    ids = [i for i, _ in published]
    assert len(ids) == len(set(ids)) == len(queued)  # each entry exactly once
    per_meter: dict[str, list[int]] = defaultdict(list)
    for i, meter in published:
        per_meter[meter].append(i)
    assert sorted(per_meter) == meters
    assert all(ids_ == sorted(ids_) for ids_ in per_meter.values())  # in order per meter


def test_a_long_backlog_held_by_one_publisher_does_not_hide_the_other_meters(
    storage: Storage,
) -> None:
    """A claim looks for free meters among the oldest entries first; when those all belong to
    meters held by others, it looks at the whole outbox."""
    storage.record([reading("big", index) for index in range(outbox_window(1) + 1)], outbox=True)
    storage.record([reading("small", 0)], outbox=True)
    assert {r.meter for _, r in storage.outbox_pending(1, holder="a", lease=LONG)} == {"big"}
    [(_, other)] = storage.outbox_pending(1, holder="b", lease=LONG)
    assert other.meter == "small"
    assert storage.outbox_pending(1, holder="c", lease=LONG) == []


def test_the_backlog_counts_what_waits_and_dates_the_first_queued(storage: Storage) -> None:
    assert storage.outbox_backlog("mqtt") == (0, None)
    storage.record([reading("m1", 3), reading("m0", 1)], outbox=True)
    storage.record([reading("m0", 2)])  # stored, not queued
    storage.record([reading("m0", 4)], outbox=True)
    assert storage.outbox_backlog() == (3, reading("m1", 3).read_at)
    assert storage.outbox_backlog("influxdb") == (0, None)  # the outbox is MQTT's queue
    items = storage.outbox_pending(100)
    storage.outbox_done([i for i, r in items if r.meter == "m1"])
    assert storage.outbox_backlog("mqtt") == (2, reading("m0", 1).read_at)
    storage.outbox_done([i for i, _ in items])
    assert storage.outbox_backlog("mqtt") == (0, None)
