"""The collector's tariff control: each meter's tariff output (pin 4) driven by its schedule
and by commands (Home Assistant's "Tariff" select, through the :class:`TariffBoard`).

One task per meter with ``tariff_output``: at start it sets what the schedule says (nothing
without a schedule: the meter keeps what its pin 4 has until a command comes); at each of the
schedule's boundaries it sets the schedule's tariff again; a command sets its tariff at once
and holds until the next boundary. A command or a boundary that fails (the output unreachable)
is logged and tried again every :data:`RETRY` seconds until it holds or another replaces it.
What was set goes on the board (the select's state: what the module last set).

A tariff output that cannot work here at all (the ``gpio`` extra missing, no such chip) stops
the collector's start with a :class:`~kamstrup382.errors.ConfigError` naming the meter's
``tariff_output`` key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

from kamstrup382.clock import Clock
from kamstrup382.collector.config import MeterConfig
from kamstrup382.collector.waits import wait_first
from kamstrup382.emulator.tariff import TariffSchedule
from kamstrup382.errors import ConfigError, Kamstrup382Error
from kamstrup382.pulses.tariff import TariffBoard, TariffOutput, open_tariff_output

__all__ = ["RETRY", "TariffControl"]

log = logging.getLogger(__name__)

#: Seconds between tries of a tariff that could not be set.
RETRY = 5.0


class TariffControl:
    """The tariff outputs of ``meters`` (those with ``tariff_output``) on ``clock``'s time."""

    def __init__(self, meters: Sequence[MeterConfig], clock: Clock) -> None:
        self.clock = clock
        self.outputs: dict[str, TariffOutput] = {}
        self.schedules: dict[str, TariffSchedule | None] = {}
        self._keys: dict[str, str] = {}
        for index, meter in enumerate(meters):
            if meter.tariff is not None:
                self.outputs[meter.name] = open_tariff_output(meter.tariff.output)
                self.schedules[meter.name] = meter.tariff.schedule
                self._keys[meter.name] = f"meters[{index}].tariff_output"
        #: what was set and what is asked, per meter (the outputs show and command it)
        self.board = TariffBoard(list(self.outputs))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self._tasks or not self.outputs:
            return
        for name, output in self.outputs.items():
            try:
                output.check()
            except Kamstrup382Error as exc:
                raise ConfigError(self._keys[name], str(exc)) from exc
        for name in self.outputs:
            self._tasks.append(asyncio.create_task(self._drive(name), name=f"k382-tariff-{name}"))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for output in self.outputs.values():
            try:
                await output.close()
            except Kamstrup382Error as exc:
                log.warning("tariff output %s: %s", output.name, exc)

    async def _drive(self, name: str) -> None:
        output, schedule, board = self.outputs[name], self.schedules[name], self.board
        wanted: tuple[int, str] | None = None
        if schedule is not None:
            wanted = (schedule.tariff_at(self.clock.now()), "schedule")
        while True:
            failed = False
            if wanted is not None and board.state(name).tariff != wanted[0]:
                tariff, origin = wanted
                try:
                    await output.set(tariff)
                except Kamstrup382Error as exc:
                    failed = True
                    log.warning("tariff %s: %s; again in %.0f s", name, exc, RETRY)
                else:
                    board.was_set(name, tariff, origin)
                    log.info("tariff %s: %d (%s) on %s", name, tariff, origin, output.name)
            boundary = None if schedule is None else schedule.next_boundary(self.clock.now())
            waits: list[Awaitable[object]] = [board.event(name).wait()]
            if boundary is not None:
                waits.append(self.clock.sleep_until(boundary))
            if failed:
                waits.append(asyncio.sleep(RETRY))
            await wait_first(*waits)
            command = board.take(name)
            if command is not None:
                wanted = command
            elif schedule is not None and boundary is not None and self.clock.now() >= boundary:
                wanted = (schedule.tariff_at(self.clock.now()), "schedule")
