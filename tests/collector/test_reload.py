"""A running collector takes a new configuration (SIGHUP): meters added, removed, changed."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import timedelta

from kamstrup382.collector import Collector
from kamstrup382.collector.pool import ReaderPool
from kamstrup382.collector.reload import compare
from kamstrup382.collector.schedule import slot_of
from kamstrup382.emulator import EmulatorThread
from kamstrup382.storage import ReadingRecord
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config

SPEED = 200.0
URL = "sqlite:///unused.sqlite"


def test_compare_names_meters_added_removed_changed_and_tables_for_a_restart() -> None:
    ports = ["socket://127.0.0.1:1", "socket://127.0.0.1:2", "socket://127.0.0.1:3"]
    running = make_config(URL, ports[:2])
    same = compare(running, make_config(URL, ports[:2]))
    assert (same.added, same.removed, same.changed, same.restart) == ((), (), (), ())
    assert not same.meters_changed and same.summary() == "no meter changed"

    # m1 moves to another port; m2 is new
    new = make_config(URL, [ports[0], ports[2], ports[1]])
    change = compare(running, new)
    assert [m.name for m in change.added] == ["m2"]
    assert (change.removed, change.changed, change.restart) == ((), ("m1",), ())
    assert change.summary() == "added 1 (m2); changed 1 (m1)"

    fewer = compare(running, make_config(URL, ports[:1]))
    assert fewer.removed == ("m1",) and fewer.summary() == "removed 1 (m1)"

    # a meter default of [collector] changes the meters, not the collector's own settings
    slower = compare(running, make_config(URL, ports[:2], interval=60))
    assert slower.changed == ("m0", "m1") and slower.restart == ()

    # these are built once: applied by a restart
    other = make_config("sqlite:///other.sqlite", ports[:2], batch_size=10, extra="[mqtt]\n")
    assert compare(running, other).restart == ("storage", "collector", "mqtt")


def stored(url: str) -> list[ReadingRecord]:
    with open_storage(url) as storage:
        return list(storage.readings())


async def test_meters_added_and_removed_while_running(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/reload.sqlite"
    with EmulatorThread(meters=3, transport="tcp", speed=SPEED, delay=0.02) as emu:
        first = make_config(url, emu.ports[:2], interval=1)
        # m0 goes, m1 stays, m2 comes (on the third emulated meter)
        second = make_config(url, emu.ports[:3], interval=1)
        second = dataclasses.replace(second, meters=second.meters[1:])
        with open_storage(url) as storage:
            collector = Collector(first, storage)
            stop = asyncio.Event()
            running = asyncio.create_task(collector.run(stop))
            await asyncio.sleep(2.3)
            change = await collector.reload(second)
            reloaded = collector.clock.now()
            await asyncio.sleep(2.6)
            stop.set()
            await asyncio.wait_for(running, 30)
    assert [m.name for m in change.added] == ["m2"] and change.removed == ("m0",)
    assert [m.name for m in collector.config.meters] == ["m1", "m2"]
    rows = stored(url)
    one_second = timedelta(seconds=1)
    reload_slot = slot_of(reloaded, one_second)
    by_meter = {name: sorted(r.slot for r in rows if r.meter == name) for name in ("m0", "m1")}
    added = sorted(r.slot for r in rows if r.meter == "m2")
    # m0: read before the reload, never from the slot after it on
    assert by_meter["m0"] and max(by_meter["m0"]) <= reload_slot
    # m2: read from the slot it was added in (or the next), in every slot after
    assert added and added[0] <= reload_slot + one_second
    assert len(added) >= 2
    # m1: in every whole slot of the run, before and after the reload
    assert len(by_meter["m1"]) >= 4
    assert {b - a for a, b in itertools.pairwise(by_meter["m1"])} == {one_second}


async def test_a_kept_connection_of_a_meter_removed_or_changed_is_closed() -> None:
    with EmulatorThread(meters=2, transport="tcp", speed=SPEED, delay=0.02) as emu:
        config = make_config(URL, emu.ports, keep_connected=True)
        m0, m1 = config.meters
        pool = ReaderPool(config.meters, keep_connected=True)
        readers = {}
        for meter in (m0, m1):
            async with pool.reader(meter) as reader:
                await pool.connect(reader)
                readers[meter.name] = reader
                pool.remember(meter.name, reader)
        assert all(r._link is not None for r in readers.values())
        # m0 removed, m1 given other timing: neither kept reader is used again, both closed
        moved = dataclasses.replace(m1, jitter=timedelta(seconds=3))
        pool.update([moved])
        await asyncio.sleep(0.1)
        assert all(r._link is None for r in readers.values())
        async with pool.reader(moved) as fresh:
            assert fresh is not readers["m1"]
        # a kept reader in a readout when the meter goes is closed when that readout ends
        async with pool.reader(moved) as busy:
            await pool.connect(busy)
            pool.update([])
            await asyncio.sleep(0.05)
            assert busy._link is not None
            pool.remember(moved.name, busy)
        await asyncio.sleep(0.1)
        assert busy._link is None
        assert pool.bcc_memory("m0") is None and pool.bcc_memory("m1") is None
        await pool.close()


def test_a_pulse_input_added_by_a_reload_is_named_for_a_restart() -> None:
    ports = ["socket://127.0.0.1:1", "socket://127.0.0.1:2"]
    running = make_config(URL, ports)
    pulsed = make_config(URL, ports, meter_extra={1: 'pulses = "tcp://127.0.0.1:9"'})
    change = compare(running, pulsed)
    assert change.changed == ("m1",)
    assert change.restart == ("meters' pulses or tariff_output (m1)",)
