"""Leases on PostgreSQL: each meter to exactly one collector per slot, takeover after expiry."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage
from tests.storage.samples import START, STEP, failure, reading

pytestmark = pytest.mark.postgres

METERS = [f"m{i:03d}" for i in range(300)]
LONG = timedelta(minutes=5)


@pytest.fixture
def collectors(postgres_db_url: str) -> Iterator[list[Storage]]:
    stores = [open_storage(postgres_db_url) for _ in range(3)]
    yield stores
    for s in stores:
        s.close()


def test_concurrent_claims_never_share_a_meter(collectors: list[Storage]) -> None:
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(collectors))

    def run(index: int, storage: Storage) -> None:
        name = f"c{index}"
        barrier.wait()
        mine: list[str] = []
        for start in range(0, len(METERS), 25):  # claims in chunks, interleaved with the others
            mine += storage.claim(name, METERS[start : start + 25], START, LONG)
        mine += storage.claim(name, METERS, START, LONG)  # renewals come back once more
        got[name] = mine

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(collectors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holders: Counter[str] = Counter()
    for mine in got.values():
        holders.update(set(mine))
    assert sorted(holders) == METERS
    assert set(holders.values()) == {1}


def test_claims_follow_slots_readings_and_expiry(collectors: list[Storage]) -> None:
    a, b, _ = collectors
    short = timedelta(milliseconds=300)
    assert a.claim("a", ["m1", "m2", "m3"], START, short) == ["m1", "m2", "m3"]
    assert b.claim("b", ["m3", "m2", "m1"], START, LONG) == []
    # a stores m1 (a reading) and m2 (a failure): done for this slot, for everyone
    a.record([reading("m1", 0)], [failure("m2", 0)])
    assert a.claim("a", ["m1", "m2", "m3"], START, short) == ["m3"]  # renewal of m3 only
    time.sleep(0.5)
    # a's lease on m3 expired (a died): b takes it over, a does not get it back
    assert b.claim("b", ["m1", "m2", "m3"], START, LONG) == ["m3"]
    assert a.claim("a", ["m3"], START, short) == []
    # the next slot is free again for whoever comes first
    assert b.claim("b", ["m1", "m2"], START + STEP, LONG) == ["m1", "m2"]
    # a late collector still working on the previous slot gets nothing that moved on
    assert a.claim("a", ["m1"], START, LONG) == []


def test_a_stored_reading_is_never_handed_out_again(collectors: list[Storage]) -> None:
    a, b, _ = collectors
    a.record([reading("m7", 0)])  # stored without any claim (e.g. by a collector without leases)
    assert b.claim("b", ["m7", "m8"], START, LONG) == ["m8"]


def test_a_slow_holder_and_its_successor_store_one_reading(collectors: list[Storage]) -> None:
    a, b, _ = collectors
    assert a.claim("a", ["m1"], START, timedelta(milliseconds=100)) == ["m1"]
    time.sleep(0.2)
    assert b.claim("b", ["m1"], START, LONG) == ["m1"]
    assert b.record([reading("m1", 0)]) == 1
    late = reading("m1", 0)
    assert a.record([late]) == 0
    assert len(list(a.readings("m1"))) == 1


def test_release_and_a_stored_attempt_end_claims(collectors: list[Storage]) -> None:
    a, b, _ = collectors
    assert a.claim("a", ["m1", "m2", "m3"], START, LONG) == ["m1", "m2", "m3"]
    b.release("b", ["m1"], START)  # not b's: nothing happens
    assert b.claim("b", ["m1"], START, LONG) == []
    a.release("a", ["m1", "m2"], START)
    a.record([], [failure("m3", 0)])  # a failure stored for the slot marks it done too
    assert b.claim("b", ["m1", "m2", "m3"], START, LONG) == ["m1", "m2"]
    assert a.claim("a", ["m3"], START, LONG) == []
    b.release("b", [], START)
    assert b.claim("b", [], START, LONG) == []
