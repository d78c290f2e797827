"""``protocol = "auto"``: detected at a meter's first readout, tried again after a failure,
forgotten when its settings change; and the reader each protocol gets from the pool."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from kamstrup382.collector.kmp_config import KmpSettings, MeterProtocol
from kamstrup382.collector.pool import ReaderPool
from kamstrup382.collector.protocols import Found, ProtocolFinder, stored
from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.errors import ReadTimeout
from kamstrup382.reader import AsyncReader
from kamstrup382.reader.kmp_aio import AsyncKmpReader
from tests.collector.conftest import make_config


async def test_nothing_answering_fails_and_is_tried_again(tmp_path: Path) -> None:
    told: list[tuple[str, Found]] = []

    async def on_found(meter: str, found: Found) -> None:
        told.append((meter, found))

    finder = ProtocolFinder(on_found)
    with KmpEmulatorThread(1, faults=KmpFaults.parse("silent=1")) as emulator:
        config = make_config(
            f"sqlite:///{tmp_path / 'r.sqlite'}",
            emulator.ports,
            meter_extra={0: 'protocol = "auto"'},
        )
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

    finder = ProtocolFinder(on_found)
    with KmpEmulatorThread(1) as emulator:
        config = make_config(
            f"sqlite:///{tmp_path / 'r.sqlite'}",
            emulator.ports,
            meter_extra={0: 'protocol = "auto"\nregisters = ["energy"]'},
        )
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
