"""A reload while an ``auto`` meter is being detected, through the real collector: what the
detection finds for the meter removed or moved is neither kept nor stored; the moved meter is
detected again on its new port, and that is what a restart knows."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.storage import KmpReadingRecord, ReadingRecord
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config
from tests.collector.peer import ScriptedMeter

T0 = datetime(2026, 3, 1, 10, 7, 31, tzinfo=UTC)
AUTO = 'protocol = "auto"'


async def test_a_reload_during_detections_keeps_none_of_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    clock = ManualClock(T0)
    async with ScriptedMeter("gated") as a, ScriptedMeter("gated") as b:
        asked = {"m0": asyncio.Event(), "m1": asyncio.Event()}
        a.on_event = lambda event: asked["m0"].set() if event == "request" else None
        b.on_event = lambda event: asked["m1"].set() if event == "request" else None
        with KmpEmulatorThread(1) as kmp:
            running = make_config(url, [a.port, b.port], meter_extra={0: AUTO, 1: AUTO})
            # the reload: m0 removed, m1 moved to a KMP meter's port
            moved = make_config(url, [kmp.ports[0], kmp.ports[0]], meter_extra={1: AUTO})
            moved = dataclasses.replace(moved, meters=moved.meters[1:])
            with open_storage(url) as storage:
                async with Collector(running, storage, [], clock=clock) as collector:
                    slot = clock.now()
                    readouts = [
                        asyncio.create_task(collector.read_meter(m, slot)) for m in running.meters
                    ]
                    for event in asked.values():  # both detections are running
                        await asyncio.wait_for(event.wait(), 10)
                    change = await collector.reload(moved)
                    a.gate.set()
                    b.gate.set()
                    old = await asyncio.wait_for(asyncio.gather(*readouts), 20)
                    assert all(isinstance(r, ReadingRecord) for r in old), old  # read as found
                    assert collector.protocols.found("m0") is None
                    assert collector.protocols.found("m1") is None  # not the old port's
                    again = await asyncio.wait_for(collector.read_meter(moved.meters[0], slot), 20)
                    assert isinstance(again, KmpReadingRecord), again
                    assert collector.protocols.found("m1") == ("kmp", (9600, 1))
                    assert collector.protocols.busy() == frozenset()
        with open_storage(url) as storage:  # what a restart would load
            known = storage.known_protocols(["m0", "m1"])
    assert change.removed == ("m0",) and change.changed == ("m1",)
    assert known == {"m1": ("kmp", 9600)}
