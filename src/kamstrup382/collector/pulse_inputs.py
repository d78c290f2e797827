"""The collector's pulse inputs: each meter with ``pulses`` read live, its power told to the
outputs.

One task per meter follows its source (:mod:`kamstrup382.pulses.sources`: a TCP source
reconnects with backoff by itself) into the meter's :class:`~kamstrup382.pulses.live.LiveMeter`;
each pulse event, and each :data:`TICK` while none comes (the power decays), becomes a
:class:`~kamstrup382.pulses.live.PowerUpdate` handed to every output's ``power`` hook. Each
readout of the meter re-syncs its energy to the ``1.20`` register (:meth:`PulseInputs.readout`)
and measures the drift: logged as a warning when it is more than the register's rounding (the
module misses pulses, or counts others), at debug level otherwise.

A source that fails (a GPIO line taken away) is logged and tried again after
:data:`RETRY` seconds; a source that cannot work at all (the ``gpio`` extra missing, no such
chip) stops the collector's start with a :class:`~kamstrup382.errors.ConfigError` naming the
meter's ``pulses`` key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from kamstrup382.collector.config import MeterConfig
from kamstrup382.errors import ConfigError, Kamstrup382Error, TypeNumberError
from kamstrup382.outputs.base import Output
from kamstrup382.protocol import KAMSTRUP_382, parse_type_number
from kamstrup382.pulses.live import LiveMeter, PowerUpdate
from kamstrup382.pulses.sources import PulseSource, open_pulse_source
from kamstrup382.storage import ReadingRecord

__all__ = ["RETRY", "TICK", "PulseInputs"]

log = logging.getLogger(__name__)

#: Seconds between two updates while no pulse comes (the decay shows at this pace).
TICK = 1.0
#: Seconds before a failed source is opened again.
RETRY = 5.0


class PulseInputs:
    """The pulse inputs of ``meters`` (those with ``pulses``), telling ``outputs``."""

    def __init__(
        self, meters: Sequence[MeterConfig], outputs: Iterable[Output], *, tick: float = TICK
    ) -> None:
        self.outputs = tuple(outputs)
        self.tick = tick
        self.live: dict[str, LiveMeter] = {}
        self.sources: dict[str, PulseSource] = {}
        self._keys: dict[str, str] = {}
        for index, meter in enumerate(meters):
            if meter.pulses is not None:
                self.live[meter.name] = LiveMeter(meter.name, meter.pulses)
                self.sources[meter.name] = open_pulse_source(meter.pulses.source)
                self._keys[meter.name] = f"meters[{index}].pulses"
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Check every source, then follow them (a second call does nothing)."""
        if self._tasks or not self.live:
            return
        for name, source in self.sources.items():
            try:
                source.check()
            except Kamstrup382Error as exc:
                raise ConfigError(self._keys[name], str(exc)) from exc
        for name, source in self.sources.items():
            self._tasks.append(
                asyncio.create_task(self._follow(name, source), name=f"k382-pulses-{name}")
            )
        self._tasks.append(asyncio.create_task(self._ticks(), name="k382-pulses-tick"))
        log.info("pulse inputs: %s", ", ".join(f"{n} {s.name}" for n, s in self.sources.items()))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def readout(self, record: ReadingRecord) -> None:
        """A reading of a meter: its pulse input (if any) re-synced to its energy register."""
        live = self.live.get(record.meter)
        if live is None:
            return
        resync = live.readout(
            record.values.energy,
            _ns(record.read_at),
            _max_power_w(record.type_number),
        )
        if resync is not None:
            beyond = live.drift_beyond_rounding(resync)
            log.log(
                logging.WARNING if beyond else logging.DEBUG,
                "pulses %s: %d pulses (%s kWh) counted for a register increase of %s kWh: "
                "drift %s kWh%s",
                record.meter,
                resync.pulses,
                resync.pulses / live.settings.constant,
                resync.increase,
                resync.drift,
                " (more than rounding: the module misses pulses or counts others)"
                if beyond
                else "",
            )
        self._tell(live.update(time.monotonic_ns()))

    # -- the tasks -------------------------------------------------------------------------
    async def _follow(self, name: str, source: PulseSource) -> None:
        live = self.live[name]
        while True:
            stream = source.events()
            try:
                async for event in stream:
                    mono = time.monotonic_ns()
                    wall = event.at_ns
                    if not source.wall_clock:
                        wall = event.at_ns + (time.time_ns() - mono)
                    live.connected = True
                    live.pulse(
                        event.at_ns,
                        event.count,
                        missed=event.missed,
                        gap=event.gap,
                        mono_ns=mono,
                        wall_ns=wall,
                    )
                    self._tell(live.update(mono))
            except Kamstrup382Error as exc:
                log.error("pulses %s: %s; again in %.0f s", name, exc, RETRY)
            except Exception:  # a bug must not end the input for good: say so loudly
                log.exception("pulses %s: failed; again in %.0f s", name, RETRY)
            finally:
                live.connected = False
                with contextlib.suppress(Exception):
                    await stream.aclose()
            await asyncio.sleep(RETRY)

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic_ns()
            for name, live in self.live.items():
                live.connected = self.sources[name].connected
                self._tell(live.update(now))

    def _tell(self, update: PowerUpdate) -> None:
        for output in self.outputs:
            try:
                output.power(update)
            except Exception:
                log.exception("output %s failed to take the power of %s", output.name, update.meter)


def _ns(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _max_power_w(type_number: str | None) -> float | None:
    """The most a meter of this type number can deliver (W), ``None`` when it does not say."""
    if type_number is None:
        return None
    try:
        phases = parse_type_number(type_number).phases
    except TypeNumberError:
        return None
    return float(KAMSTRUP_382.max_power_kw(phases) * 1000)
