"""``protocol = "auto"``: detected at a meter's first readout, tried again after a failure,
forgotten when its settings change; and the reader each protocol gets from the pool."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from kamstrup382.collector.config import MeterConfig
from kamstrup382.collector.kmp_config import KmpSettings, MeterProtocol
from kamstrup382.collector.pool import ReaderPool
from kamstrup382.collector.protocols import Found, ProtocolFinder, stored
from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.errors import ReadTimeout
from kamstrup382.reader import AsyncReader
from kamstrup382.reader.kmp_aio import AsyncKmpReader
from tests.collector.conftest import make_config
from tests.collector.peer import ScriptedMeter


async def test_nothing_answering_fails_and_is_tried_again(tmp_path: Path) -> None:
    told: list[tuple[str, Found]] = []

    async def on_found(meter: str, found: Found) -> None:
        told.append((meter, found))

    with KmpEmulatorThread(1, faults=KmpFaults.parse("silent=1")) as emulator:
        config = make_config(
            f"sqlite:///{tmp_path / 'r.sqlite'}",
            emulator.ports,
            meter_extra={0: 'protocol = "auto"'},
        )
        finder = ProtocolFinder(config.meters, on_found)
        m = config.meters[0]
        with pytest.raises(ReadTimeout) as caught:
            await finder.settings(m)
        assert "auto: no meter answered" in str(caught.value)
        assert "IEC 61107 mode A 300 7E1: timeout" in str(caught.value)
        assert finder.found(m.name) is None  # the next readout detects again
        assert told == []


async def test_found_once_kept_and_forgotten(tmp_path: Path) -> None:
    told: list[tuple[str, Found]] = []

    async def on_found(meter: str, found: Found) -> None:
        told.append((meter, found))

    with KmpEmulatorThread(1) as emulator:
        config = make_config(
            f"sqlite:///{tmp_path / 'r.sqlite'}",
            emulator.ports,
            meter_extra={0: 'protocol = "auto"\nregisters = ["energy"]'},
        )
        finder = ProtocolFinder(config.meters, on_found)
        m = config.meters[0]
        both = await asyncio.gather(finder.settings(m), finder.settings(m))  # detected once
        requests = len(emulator.log(0))
    assert both[0] == both[1] == KmpSettings(baud=9600, stop_bits=1, registers=("energy",))
    assert requests == 1  # one GetType: the two readouts did not both detect
    assert told == [(m.name, ("kmp", (9600, 1)))]  # told once, to be stored
    assert stored(told[0][1]) == ("kmp", 9600)
    finder.forget([m.name])
    assert finder.found(m.name) is None
    finder.load({m.name: ("iec", None)})
    assert await finder.settings(m) is None  # mode A, as stored
    finder.load({m.name: ("kmp", 1200), "other": ("xyz", 1)})  # MULTICAL's line; unknown: none
    assert finder.found(m.name) == ("kmp", (1200, 2)) and finder.found("other") is None
    assert len(told) == 1


async def test_the_pool_gives_each_protocol_its_reader(tmp_path: Path) -> None:
    config = make_config(
        f"sqlite:///{tmp_path / 'r.sqlite'}",
        ["socket://127.0.0.1:9", "/dev/ttyUSB0"],
        meter_extra={1: 'protocol = "kmp"\nbaud = 1200\nstop_bits = 2\nretries = 4'},
    )
    iec, kmp = config.meters
    assert (iec.protocol, kmp.protocol) == (MeterProtocol.IEC, MeterProtocol.KMP)
    pool = ReaderPool(config.meters, keep_connected=True)
    async with pool.reader(iec) as a:
        assert isinstance(a, AsyncReader)
    assert kmp.kmp is not None
    async with pool.reader(kmp, kmp.kmp) as k:
        assert isinstance(k, AsyncKmpReader)
        assert (k.timing.baud, k.stop_bits, k.retries) == (1200, 2, 4)
        assert k.options.stop_bits == 2 and k.identify_meter
        assert not k.connected
    # the protocol found changed: the kept reader of the other protocol is not reused
    async with pool.reader(replace(kmp, protocol=MeterProtocol.IEC)) as again:
        assert isinstance(again, AsyncReader)
    await pool.close()


async def _held_detection(
    tmp_path: Path, peer: ScriptedMeter
) -> tuple[ProtocolFinder, list[tuple[str, Found]], MeterConfig, asyncio.Event]:
    """A finder and an ``auto`` meter on ``peer`` (whose first reply the test lets go), and an
    event set when the peer has the detection's request."""
    told: list[tuple[str, Found]] = []

    async def on_found(meter: str, found: Found) -> None:
        told.append((meter, found))

    requested = asyncio.Event()
    peer.on_event = lambda event: requested.set() if event == "request" else None
    config = make_config(
        f"sqlite:///{tmp_path / 'r.sqlite'}", [peer.port], meter_extra={0: 'protocol = "auto"'}
    )
    return ProtocolFinder(config.meters, on_found), told, config.meters[0], requested


async def test_a_meter_forgotten_while_detected_keeps_nothing(tmp_path: Path) -> None:
    async with ScriptedMeter("gated") as peer:
        finder, told, m, requested = await _held_detection(tmp_path, peer)
        detecting = asyncio.create_task(finder.settings(m))
        await asyncio.wait_for(requested.wait(), 5)  # the detection is running now
        assert finder.busy() == {m.name}
        finder.forget([m.name])  # a reload removed it (or changed it) meanwhile
        peer.gate.set()
        assert await asyncio.wait_for(detecting, 10) is None  # that readout: mode A, as found
        assert finder.found(m.name) is None and told == []  # nothing kept, nothing stored
        assert finder.busy() == frozenset()  # its lock freed
        # its next readout (the meter configured again) detects again, and keeps it
        assert await asyncio.wait_for(finder.settings(m), 10) is None
        assert peer.requests == 2
    assert finder.found(m.name) == ("iec", None) and told == [(m.name, ("iec", None))]
    assert finder.busy() == frozenset()


async def test_a_readout_waiting_on_a_forgotten_detection_detects_again(tmp_path: Path) -> None:
    async with ScriptedMeter("gated") as peer:
        finder, told, m, requested = await _held_detection(tmp_path, peer)
        first = asyncio.create_task(finder.settings(m))
        await asyncio.wait_for(requested.wait(), 5)
        changed = replace(m, timing=replace(m.timing, answer_margin=1.0))  # as a reload made it
        second = asyncio.create_task(finder.settings(changed))  # waits for the first
        await asyncio.sleep(0.05)
        assert peer.requests == 1 and finder.busy() == {m.name}
        finder.configure([changed])  # the reload: m is forgotten
        peer.gate.set()
        assert list(await asyncio.wait_for(asyncio.gather(first, second), 10)) == [None, None]
        assert peer.requests == 2  # the second readout's detection, under the new settings
    assert told == [(m.name, ("iec", None))]  # only that one kept
    assert finder.found(m.name) == ("iec", None) and finder.busy() == frozenset()


async def test_the_finder_keeps_no_lock_of_meters_gone(tmp_path: Path) -> None:
    async with ScriptedMeter("answer") as peer:
        config = make_config(
            f"sqlite:///{tmp_path / 'r.sqlite'}",
            [peer.port] * 20,
            meter_extra={i: 'protocol = "auto"' for i in range(20)},
        )
        finder = ProtocolFinder(config.meters)
        for index, m in enumerate(config.meters):  # detected, then removed by a reload
            assert await asyncio.wait_for(finder.settings(m), 10) is None
            assert finder.found(m.name) == ("iec", None)
            finder.configure(config.meters[index + 1 :])
        assert peer.requests == 20
    assert finder.busy() == frozenset()
    assert all(finder.found(m.name) is None for m in config.meters)


async def test_a_readout_of_settings_a_reload_replaced_keeps_nothing(tmp_path: Path) -> None:
    """A slot in flight at a reload reads its meters with the settings it began with: what it
    detects with the old ones is its own."""
    async with ScriptedMeter("answer") as old, ScriptedMeter("answer") as new:
        url = f"sqlite:///{tmp_path / 'r.sqlite'}"
        running = make_config(url, [old.port], meter_extra={0: 'protocol = "auto"'})
        moved = make_config(url, [new.port], meter_extra={0: 'protocol = "auto"'})
        told: list[tuple[str, Found]] = []

        async def on_found(meter: str, found: Found) -> None:
            told.append((meter, found))

        finder = ProtocolFinder(running.meters, on_found)
        finder.configure(moved.meters)  # m0 moved to another port
        assert await asyncio.wait_for(finder.settings(running.meters[0]), 10) is None
        assert old.requests == 1 and finder.found("m0") is None and told == []
        assert await asyncio.wait_for(finder.settings(moved.meters[0]), 10) is None
        assert new.requests == 1 and told == [("m0", ("iec", None))]
        # kept for the meter as configured; the old settings still detect for themselves
        assert await asyncio.wait_for(finder.settings(running.meters[0]), 10) is None
        assert await asyncio.wait_for(finder.settings(moved.meters[0]), 10) is None
        assert (old.requests, new.requests) == (2, 1) and len(told) == 1
        finder.configure(running.meters)  # and back: found again on the old port
        assert finder.found("m0") is None
