"""The ``announced`` table (migration 6) on both backends: what an output announced, with
leases, so that a collector clears only devices no running collector announces."""

from __future__ import annotations

import time
from datetime import timedelta

from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage

OUT = "mqtt:homeassistant"
LEASE = timedelta(minutes=5)


def test_announce_reports_what_was_recorded_before(storage: Storage) -> None:
    assert storage.announce(OUT, "a", {"dev1": "house", "dev2": "garage"}, LEASE) == {
        "dev1": None,
        "dev2": None,
    }
    # a renamed meter: the same device, another name; the old name is reported
    assert storage.announce(OUT, "a", {"dev1": "home"}, LEASE) == {"dev1": "house"}
    assert storage.announce(OUT, "a", {"dev1": "home"}, LEASE) == {"dev1": "home"}
    # outputs are apart
    assert storage.announce("mqtt:other", "a", {"dev1": "home"}, LEASE) == {"dev1": None}
    assert storage.announce(OUT, "a", {}, LEASE) == {}


def test_only_devices_no_running_collector_announces_are_stale(storage: Storage) -> None:
    storage.announce(OUT, "a", {"dev1": "house", "dev2": "garage"}, LEASE)
    storage.announce(OUT, "b", {"dev3": "barn"}, LEASE)
    # a keeps announcing dev1 only: dev2 is its own and no longer announced; b's dev3 is live
    assert storage.stale_announcements(OUT, "a", ["dev1"]) == {"dev2": "garage"}
    # a collector alone on its storage: everything it does not announce
    assert storage.stale_announcements(OUT, "a", ["dev1"], everyone=True) == {
        "dev2": "garage",
        "dev3": "barn",
    }
    # b stops: its leases end at once, and its device becomes stale for a
    storage.release_announcements(OUT, "b")
    assert storage.stale_announcements(OUT, "a", ["dev1"]) == {"dev2": "garage", "dev3": "barn"}
    # ... unless b (or anyone) announces it again before a forgets it: then it stays
    storage.announce(OUT, "b", {"dev3": "barn"}, LEASE)
    assert storage.forget_announcements(OUT, "a", ["dev2", "dev3"]) == 1
    assert storage.stale_announcements(OUT, "a", ["dev1"]) == {}
    assert storage.announce(OUT, "a", {"dev2": "garage"}, LEASE) == {"dev2": None}


def test_a_device_two_collectors_announce_stays_while_either_runs(storage: Storage) -> None:
    storage.announce(OUT, "a", {"dev1": "house"}, LEASE)
    storage.announce(OUT, "b", {"dev1": "house"}, LEASE)
    # a restarts (a new holder, "a2") with a config without dev1: b still announces it
    storage.release_announcements(OUT, "a")
    assert storage.stale_announcements(OUT, "a2", []) == {}
    assert storage.forget_announcements(OUT, "a2", ["dev1"]) == 0
    # b restarts ("b2") with the new config too: now nobody announces it
    storage.release_announcements(OUT, "b")
    assert storage.stale_announcements(OUT, "b2", []) == {"dev1": "house"}
    assert storage.forget_announcements(OUT, "b2", ["dev1"]) == 2  # a's row and b's
    # a collector's own name for a device wins over another's (a rename it made)
    storage.announce(OUT, "a", {"dev2": "garage"}, LEASE)
    storage.announce(OUT, "b", {"dev2": "shed"}, LEASE)
    assert storage.announce(OUT, "a", {"dev2": "garage"}, LEASE) == {"dev2": "garage"}
    # expired rows of other holders of a device announced are dropped: about one row per
    # device and running collector
    storage.release_announcements(OUT, "b")
    assert storage.announce(OUT, "c", {"dev2": "garage"}, LEASE) == {"dev2": "garage"}
    storage.release_announcements(OUT, "a")
    storage.announce(OUT, "c", {"dev2": "garage"}, LEASE)
    assert storage.stale_announcements(OUT, "z", [], everyone=True) == {"dev2": "garage"}
    assert storage.forget_announcements(OUT, "z", ["dev2"], everyone=True) == 1  # c's alone


def test_an_expired_lease_makes_a_device_stale(storage: Storage) -> None:
    storage.announce(OUT, "b", {"dev3": "barn"}, timedelta(milliseconds=200))
    assert storage.stale_announcements(OUT, "a", []) == {}
    deadline = time.monotonic() + 30
    while not storage.stale_announcements(OUT, "a", []):
        assert time.monotonic() < deadline, "the lease never ran out"
        time.sleep(0.05)
    assert storage.stale_announcements(OUT, "a", []) == {"dev3": "barn"}
    assert storage.forget_announcements(OUT, "a", ["dev3"]) == 1


def test_announcements_survive_a_reopen(storage_url: str) -> None:
    with open_storage(storage_url) as first:
        first.announce(OUT, "a", {"dev1": "house"}, LEASE)
    with open_storage(storage_url) as again:
        assert again.stale_announcements(OUT, "z", [], everyone=True) == {"dev1": "house"}
