"""The async links' immediate side (``AsyncLink.immediate``), against the emulator.

A TCP link writes at once and routes the reply to a readout without a coroutine per link; a
serial device (here a pty) has no immediate side: its reader awaits its writes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from kamstrup382.emulator import Emulator
from kamstrup382.errors import ConnectionLost
from kamstrup382.reader import AsyncReader, Timing
from kamstrup382.reader.aio_links import open_async_link

SPEED = 50.0


def timing() -> Timing:
    return Timing(baudrate=int(300 * SPEED))


async def test_a_tcp_link_writes_now_and_feeds_the_reply_to_the_readout() -> None:
    async with Emulator(1, transport="tcp", speed=SPEED) as emu:
        options = AsyncReader(emu.ports[0], timing=timing())
        link = await open_async_link(options.options)
        try:
            immediate = link.immediate()
            assert immediate is not None
            readout = options.session.readout()
            loop = asyncio.get_running_loop()
            immediate.write_now(readout.request)
            readout.sent(loop.time(), datetime.now(UTC))
            done: asyncio.Future[BaseException | None] = loop.create_future()
            immediate.begin_receive(readout, None, done)
            assert await asyncio.wait_for(done, 10) is None
            immediate.end_receive(readout)  # over already: nothing to do
            assert readout.reading(emu.ports[0], 1).raw == emu.sent(0)[0]
        finally:
            await link.close()
        await asyncio.sleep(0)  # the transport closes on the loop's next pass
        with pytest.raises(ConnectionLost):
            immediate.write_now(readout.request)
        assert len(emu.log(0)) == 1


async def test_a_serial_device_has_no_immediate_side() -> None:
    async with Emulator(1, transport="pty", speed=SPEED) as emu:
        options = AsyncReader(emu.ports[0], timing=timing())
        link = await open_async_link(options.options)
        try:
            assert link.immediate() is None
        finally:
            await link.close()
