"""The request gate: prepared readouts whose requests all go out when it opens.

Against the emulator over loopback TCP (whose links write at once, through the gate) and a pty
(whose reader is woken and writes its request itself), at a high line speed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

import pytest

from kamstrup382.collector.gate import GateClosed, RequestGate
from kamstrup382.emulator import Emulator
from kamstrup382.errors import UsageError
from kamstrup382.reader import AsyncReader, Timing

SPEED = 50.0
Transport = Literal["tcp", "pty"]


def timing() -> Timing:
    """The spec's answer window, with the character times of a line ``SPEED`` times faster."""
    return Timing(baudrate=int(300 * SPEED))


async def open_readers(stack: contextlib.AsyncExitStack, ports: list[str]) -> list[AsyncReader]:
    """An open reader per port, closed with ``stack``."""
    readers = [await stack.enter_async_context(AsyncReader(p, timing=timing())) for p in ports]
    for reader in readers:
        await reader.open()
    return readers


@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_request_gate_sends_every_prepared_request_when_it_opens(
    transport: Transport,
) -> None:
    async with Emulator(4, transport=transport, speed=SPEED) as emu:
        gate = RequestGate()
        async with contextlib.AsyncExitStack() as stack:
            readers = await open_readers(stack, emu.ports)
            tasks = [asyncio.create_task(reader.read(gate=gate)) for reader in readers]
            await asyncio.sleep(0.2)  # prepared and waiting: nothing sent yet
            assert not any(task.done() for task in tasks)
            assert all(emu.log(index) == [] for index in range(len(readers)))
            gate.open()
            readings = await asyncio.gather(*tasks)
    for index, reading in enumerate(readings):
        assert [reading.raw] == emu.sent(index)
        assert reading.requested_at is not None and gate.opened_at is not None
        assert reading.requested_at >= gate.opened_at


async def test_request_gate_closed_sends_nothing() -> None:
    async with Emulator(2, transport="tcp", speed=SPEED) as emu:
        gate = RequestGate()
        async with AsyncReader(emu.ports[0], timing=timing(), retries=2) as reader:
            await reader.open()
            task = asyncio.create_task(reader.read(gate=gate))
            await asyncio.sleep(0.1)
            gate.close()
            with pytest.raises(GateClosed) as closed:
                await task
            # the caller's doing, not the line's: the reader does not try again
            assert isinstance(closed.value, UsageError)
            assert closed.value.attempts == 1
            await asyncio.sleep(0.1)
            assert emu.log(0) == []
            assert (await reader.read()).raw == emu.sent(0)[0]  # the reader still works


@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_each_reader_at_a_closed_gate_gets_its_own_error(transport: Transport) -> None:
    """Waiting when it closed, or coming after: every reader raises, nothing is sent, and no
    two readers share one exception object (a reader sets ``attempts`` on what it raises)."""
    async with Emulator(3, transport=transport, speed=SPEED) as emu:
        gate = RequestGate()
        async with contextlib.AsyncExitStack() as stack:
            readers = await open_readers(stack, emu.ports)
            waiting = [asyncio.create_task(reader.read(gate=gate)) for reader in readers[:2]]
            await asyncio.sleep(0.1)
            gate.close()
            late = asyncio.create_task(readers[2].read(gate=gate))
            outcomes = await asyncio.gather(*waiting, late, return_exceptions=True)
            await asyncio.sleep(0.1)
            assert all(emu.log(index) == [] for index in range(3))
    assert all(isinstance(outcome, GateClosed) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 3
