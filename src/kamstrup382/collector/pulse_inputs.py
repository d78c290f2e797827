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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from kamstrup382.collector.config import MeterConfig
from kamstrup382.errors import ConfigError, Kamstrup382Error, TypeNumberError
from kamstrup382.outputs.base import Output
from kamstrup382.protocol import KAMSTRUP_382, parse_type_number
from kamstrup382.protocol.kmp.plausibility import MAX_POWER_KW
from kamstrup382.pulses.estimate import NS
from kamstrup382.pulses.live import LiveMeter, PowerUpdate
from kamstrup382.pulses.sources import PulseSource, open_pulse_source
from kamstrup382.storage import AnyReading, KmpReadingRecord, LivePower, PowerMinute

__all__ = ["PRUNE_EVERY", "RETRY", "TICK", "PulseInputs", "Store"]

#: Stores per-minute power and live figures; prunes minutes before the time given (or not).
Store = Callable[[list[PowerMinute], list[LivePower], datetime | None], Awaitable[None]]
#: Seconds between two prunings of the per-minute power.
PRUNE_EVERY = 3600.0

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
        self._store: Store | None = None
        self._retention: timedelta | None = None
        self._pruned = 0.0  # monotonic seconds of the last pruning
        self._store_failed = 0.0

    async def start(self, store: Store | None = None, retention: timedelta | None = None) -> None:
        """Check every source, then follow them (a second call does nothing). ``store``: where
        the per-minute power and the live figures go (each tick), minutes older than
        ``retention`` pruned hourly."""
        self._store, self._retention = store, retention
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

    def readout(self, record: AnyReading) -> None:
        """A reading of a meter: its pulse input (if any) re-synced to its energy register
        (``1.20``, or a KMP meter's ``energy`` when it was asked for)."""
        live = self.live.get(record.meter)
        if live is None:
            return
        if isinstance(record, KmpReadingRecord):
            energy = record.values.get("energy")
            if energy is None:
                return
            # the family's largest, as its type number does not say its phases over KMP
            resync = live.readout(energy, _ns(record.read_at), float(MAX_POWER_KW * 1000))
        else:
            resync = live.readout(
                record.values.energy, _ns(record.read_at), _max_power_w(record.type_number)
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
            wall = time.time_ns()
            updates = []
            minutes: list[PowerMinute] = []
            for name, live in self.live.items():
                live.connected = self.sources[name].connected
                update = live.update(now)
                self._tell(update)
                updates.append(update)
                minutes += [
                    PowerMinute(name, _wall(m.start_ns), m.pulses, m.mean_w, m.min_w, m.max_w)
                    for m in live.minutes(wall)
                ]
            if self._store is not None:
                await self._stored(minutes, updates)

    async def _stored(self, minutes: list[PowerMinute], updates: list[PowerUpdate]) -> None:
        assert self._store is not None
        figures = [
            LivePower(u.meter, u.at, u.watts, u.energy_kwh, u.pulses, u.connected) for u in updates
        ]
        prune = None
        if self._retention is not None and time.monotonic() - self._pruned >= PRUNE_EVERY:
            prune = datetime.now(UTC) - self._retention
            self._pruned = time.monotonic()
        try:
            await self._store(minutes, figures, prune)
        except Kamstrup382Error as exc:  # the next tick tries again; minutes lost are logged
            if time.monotonic() - self._store_failed >= 60:
                log.warning("pulses: power not stored (%d minutes lost): %s", len(minutes), exc)
                self._store_failed = time.monotonic()

    def _tell(self, update: PowerUpdate) -> None:
        for output in self.outputs:
            try:
                output.power(update)
            except Exception:
                log.exception("output %s failed to take the power of %s", output.name, update.meter)


def _wall(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // NS, UTC)


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
