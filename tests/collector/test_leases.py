"""Claiming meters through the storage's leases: whole lines, a few at a time, in an order of
the collector and the slot; claims renewed; meters given back.

The storage here is SQLite with its ``claim`` and ``release`` recorded (SQLite itself keeps no
leases); the leases themselves are tested against PostgreSQL in ``tests/storage`` and, with
several collectors, in ``test_collector.py`` and ``test_resilience.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kamstrup382.collector.config import MeterConfig
from kamstrup382.collector.leases import CLAIM_LINES, Leases
from kamstrup382.collector.writer import BatchWriter
from kamstrup382.errors import StorageError
from kamstrup382.storage.sqlite import SqliteStorage
from tests.collector.conftest import make_config

SLOT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


class RecordingStorage(SqliteStorage):
    """Records each claim and release; meters in ``elsewhere`` are held by another collector."""

    def __init__(self, path: Path, elsewhere: Sequence[str] = (), *, broken: bool = False):
        super().__init__(path)
        self.elsewhere = set(elsewhere)
        self.broken = broken
        self.claims: list[tuple[str, list[str], datetime, timedelta]] = []
        self.released: list[tuple[str, list[str], datetime]] = []

    def claim(
        self, collector_id: str, meters: Sequence[str], slot: datetime, lease: timedelta
    ) -> list[str]:
        self.claims.append((collector_id, list(meters), slot, lease))
        if self.broken:
            raise StorageError("the database went away")
        return [name for name in meters if name not in self.elsewhere]

    def release(self, collector_id: str, meters: Sequence[str], slot: datetime) -> None:
        self.released.append((collector_id, list(meters), slot))


def meters(tmp_path: Path, count: int, bus: Sequence[int] = ()) -> tuple[MeterConfig, ...]:
    """``count`` meters m0, m1, ... each alone on its line, but those in ``bus`` share one."""
    ports = [f"socket://127.0.0.1:{20000 + i}" for i in range(count)]
    extra = {index: 'shared_line = "bus"' for index in bus}
    return make_config(f"sqlite:///{tmp_path / 'c.sqlite'}", ports, meter_extra=extra).meters


async def claimed(
    storage: RecordingStorage,
    collector_id: str,
    unclaimed: Sequence[MeterConfig],
    renew: Sequence[str] = (),
) -> list[list[str]]:
    """What ``collector_id`` dispatches, chunk by chunk, claiming ``unclaimed`` for SLOT."""
    dispatched: list[list[str]] = []
    with ThreadPoolExecutor(max_workers=1) as executor:
        leases = Leases(BatchWriter(storage, (), executor), collector_id, LEASE)
        await leases.claim(SLOT, unclaimed, renew, lambda names: dispatched.append(list(names)))
    return dispatched


async def test_whole_lines_are_claimed_a_few_at_a_time(tmp_path: Path) -> None:
    fleet = meters(tmp_path, CLAIM_LINES + 6, bus=(3, 7))  # one line fewer than meters
    with RecordingStorage(tmp_path / "r.sqlite") as storage:
        dispatched = await claimed(storage, "a", fleet)
    names = [chunk for _, chunk, _, _ in storage.claims]
    assert dispatched == names  # each chunk dispatched as the storage granted it
    assert len(names) == 2
    lines_per_chunk = [len(chunk) - ("m3" in chunk) for chunk in names]
    assert lines_per_chunk == [CLAIM_LINES, 5]
    assert sorted(name for chunk in names for name in chunk) == sorted(m.name for m in fleet)
    (bus,) = [chunk for chunk in names if "m3" in chunk]
    assert abs(bus.index("m3") - bus.index("m7")) == 1  # a line's meters together
    assert {(who, slot, lease) for who, _, slot, lease in storage.claims} == {("a", SLOT, LEASE)}


async def test_the_order_is_the_same_for_a_collector_and_slot_and_differs_between_collectors(
    tmp_path: Path,
) -> None:
    fleet = meters(tmp_path, 20)
    with RecordingStorage(tmp_path / "r.sqlite") as storage:
        first = await claimed(storage, "a", fleet)
        again = await claimed(storage, "a", fleet)
        other = await claimed(storage, "b", fleet)
    assert first == again
    assert first != other
    assert sorted(first[0]) == sorted(other[0])


async def test_renewed_claims_go_first_and_meters_held_elsewhere_are_not_dispatched(
    tmp_path: Path,
) -> None:
    fleet = meters(tmp_path, 6)
    with RecordingStorage(tmp_path / "r.sqlite", elsewhere=["m4"]) as storage:
        dispatched = await claimed(storage, "a", fleet[3:], renew=["m0", "m1"])
    ((_, chunk, _, _),) = storage.claims
    assert chunk[:2] == ["m0", "m1"]
    assert sorted(chunk[2:]) == ["m3", "m4", "m5"]
    assert dispatched == [[name for name in chunk if name != "m4"]]


async def test_a_failed_claim_is_logged_and_ends_the_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = meters(tmp_path, CLAIM_LINES + 1)
    with RecordingStorage(tmp_path / "r.sqlite", broken=True) as storage:
        dispatched = await claimed(storage, "a", fleet)
    assert dispatched == []
    assert len(storage.claims) == 1  # the second chunk is not tried: the next round will
    assert "claiming meters for slot 2026-03-01T10:00:00+00:00 failed" in caplog.text


async def test_only_meters_not_read_are_given_back(tmp_path: Path) -> None:
    with (
        RecordingStorage(tmp_path / "r.sqlite") as storage,
        ThreadPoolExecutor(max_workers=1) as executor,
    ):
        leases = Leases(BatchWriter(storage, (), executor), "a", LEASE)
        await leases.release(SLOT, [])
        await leases.release(SLOT, ["m2", "m5"])
    assert storage.released == [("a", ["m2", "m5"], SLOT)]
