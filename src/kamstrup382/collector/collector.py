"""The collector: reads the configured meters once per wall-clock slot and stores every attempt.

- Slots are aligned to the wall clock of the given clock (see :mod:`.schedule`); the slot start
  is the key that makes storage idempotent, so a reading stored twice is kept once.
- One task per line and slot: meters that share a line (``shared_line``) are read one after the
  other, under one lock per line; all lines run in parallel in one event loop.
- Retries and backoff are the reader's own policy (``AsyncReader(retries=..., backoff=...)``);
  the readers themselves come from a :class:`.ReaderPool` (``keep_connected``, BCC hints).
- Each reading must follow the meter's last accepted one (:class:`.History`, loaded from the
  storage at start; judged inside the reader's retries, values no rule vouches for confirmed
  by a second attempt): a telegram that stays implausible is stored as a failure with its
  bytes, never as a reading.
- A slot is begun :func:`.connect_ahead` before its start: each line's next meter is connected
  then, and its request goes out at its start through a :class:`.RequestGate`.
- Results go to a :class:`.BatchWriter` (one transaction per batch, in a worker thread); the
  outputs get each batch after it is stored.
- Where the storage shares the meters with other collectors (``storage.shares_meters``:
  PostgreSQL), meters are claimed per slot through :class:`.Leases`: each collector reads only
  what it claimed.
- A meter whose turn on its line comes after its slot ended (the readout before it overran,
  or the collector fell behind) is not read in that slot: it is stored as a failure of kind
  ``missed`` (no attempt, with the reason), so that status and health plots show it.
- A slot the collector joined after it began (it was started, or restarted, during the slot)
  and whose end came before a line's first turn in it is skipped on that line: its meters are
  not recorded as ``missed`` (the collector was not running when they were due); it is logged.
- On shutdown in-flight readouts get ``grace`` seconds to finish; then they are abandoned. Only
  complete readouts and failures become rows.
- When the storage refuses results, the writer tries them again and, at shutdown (or past
  ``storage.max_pending``), spills them to a journal (:mod:`.spill`) that the next start stores:
  :attr:`Collector.unstored` says how many are there.

Time sources: ``self.clock`` (a :class:`~kamstrup382.clock.Clock`) for slots, start times and
the times stored (``read_at``, ``failed_at``); ``time.monotonic`` for durations (the records'
``duration``, :class:`.CycleResult`'s ``started``/``finished``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType

from kamstrup382.clock import Clock, SystemClock
from kamstrup382.collector.config import Config, MeterConfig
from kamstrup382.collector.cycle import CycleResult, Result, SlotState
from kamstrup382.collector.gate import GateClosed, StartGates, TimedGate
from kamstrup382.collector.history import History
from kamstrup382.collector.kmp_config import MeterProtocol
from kamstrup382.collector.kmp_history import KmpHistory
from kamstrup382.collector.leases import Leases
from kamstrup382.collector.pool import ReaderPool
from kamstrup382.collector.protocols import Found, ProtocolFinder, stored
from kamstrup382.collector.pulse_inputs import PulseInputs
from kamstrup382.collector.readout import judged_readout
from kamstrup382.collector.records import (
    failure_record,
    missed_message,
    missed_record,
)
from kamstrup382.collector.reload import ConfigChange, compare
from kamstrup382.collector.schedule import connect_ahead, jitter_offset, next_slot, slot_of
from kamstrup382.collector.spill import SpillJournal
from kamstrup382.collector.tariff_control import TariffControl
from kamstrup382.collector.waits import wait_first
from kamstrup382.collector.writer import BatchWriter
from kamstrup382.errors import Kamstrup382Error
from kamstrup382.outputs.base import Output
from kamstrup382.reader import Reading
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.storage import (
    FailureRecord,
    KmpReadingRecord,
    LivePower,
    PowerMinute,
    ReadingRecord,
    Storage,
)
from kamstrup382.storage.url import spill_path

__all__ = ["Collector", "CycleResult"]

log = logging.getLogger(__name__)


class Collector:
    """Reads ``config.meters`` on their schedule into ``storage`` and hands batches to ``outputs``.

    Use as ``async with Collector(...) as c:`` (or call ``start``/``close``); ``run_once`` and
    ``run`` start it when needed. ``clock``: the time of the slots (default: the wall clock).
    A reading's ``read_at`` is when its request went out: on the wall clock, as the reader took
    it; on a given clock (virtual time: the demo, tests), that clock's time when the readout
    began (or its gate opened).
    """

    def __init__(
        self,
        config: Config,
        storage: Storage,
        outputs: Iterable[Output] = (),
        *,
        clock: Clock | None = None,
        collector_id: str | None = None,
        on_slot: Callable[[datetime, CycleResult], None] | None = None,
    ) -> None:
        self.config = config
        #: told what each slot of :meth:`run` did, once it is done (a service's status line)
        self.on_slot = on_slot
        self.storage = storage
        self.outputs = tuple(outputs)
        self.clock: Clock = clock if clock is not None else SystemClock()
        #: The readers' wall-clock request times are times of ``self.clock``.
        self._wall_clock = clock is None
        self.collector_id = collector_id or config.collector.id
        #: Other collectors read the same meters: claim them (``Leases``).
        self.shares_meters = storage.shares_meters
        settings = config.collector
        self.pool = ReaderPool(
            config.meters, keep_connected=settings.keep_connected and not self.shares_meters
        )
        #: Per meter: the last reading accepted, which the next one must follow (mode A, KMP).
        self.history = History()
        self.kmp_history = KmpHistory()
        #: What ``protocol = "auto"`` meters were found to speak (kept in the storage).
        self.protocols = ProtocolFinder(config.meters, self._remember_protocol)
        self._locks: dict[str, asyncio.Lock] = {}
        #: Where results the storage refuses go (see :mod:`.spill`).
        self.spill = SpillJournal(spill_path(storage.url, config.storage.spill_dir))
        #: Results not stored when the collector closed: in :attr:`spill` / dropped (the
        #: journal could not be written either).
        self.unstored = 0
        self.unstored_readings = 0
        self.lost = 0
        #: When :meth:`run` began (clock time): slots that began before it were joined late.
        self._running_since: datetime | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writer: BatchWriter | None = None
        self._leases: Leases | None = None
        self._gates = StartGates(self.clock)
        self._outputs_started = False
        #: Per line: the meter read last on it and when that readout ended (clock time).
        self._line_last: dict[str, tuple[str, datetime]] = {}
        #: Set by :meth:`reload`: the schedule looks at the meters again at once.
        self._reconfigured = asyncio.Event()
        #: The meters' pulse inputs (live power), re-synced at each of their readings.
        self.pulse_inputs = PulseInputs(config.meters, self.outputs)
        #: The meters' tariff outputs (pin 4): schedules and commands (``board``).
        self.tariffs = TariffControl(config.meters, self.clock)

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._writer is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k382-storage")
        settings = self.config.collector
        stored = self.config.storage
        self._writer = BatchWriter(
            self.storage,
            self.outputs,
            self._executor,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            retry_delay=stored.retry_delay,
            retries=stored.retries,
            max_pending=stored.max_pending,
            spill=self.spill,
        )
        self._writer.start()
        await self._writer.replay()  # what an earlier run spilled (kept if this fails)
        if self.shares_meters:
            self._leases = Leases(self._writer, self.collector_id, settings.lease)
            if settings.keep_connected:
                log.warning(
                    "collector.keep_connected is ignored with PostgreSQL: the meters are shared "
                    "with other collectors, each connection is closed after its readout"
                )
        await self._load_history()
        for output in self.outputs:
            if self.tariffs.outputs:
                output.control(self.tariffs.board)
            await output.start(self.storage)
        self._outputs_started = True
        await self.pulse_inputs.start(self._store_power, self.config.storage.power_retention)
        await self.tariffs.start()

    async def _store_power(
        self, minutes: list[PowerMinute], live: list[LivePower], prune: datetime | None
    ) -> None:
        """The pulse inputs' figures, stored in the storage thread (and old minutes pruned)."""
        assert self._writer is not None
        await self._writer.call(self.storage.store_power, minutes, live)
        if prune is not None:
            await self._writer.call(self.storage.prune_power, prune)

    async def _load_history(self) -> None:
        """Each meter's last stored reading (in one query): the history the next reading must
        follow, and the BCC algorithm it used (the readers' hints)."""
        assert self._writer is not None
        await self._load_history_of([m.name for m in self.config.meters])

    async def _load_history_of(self, names: list[str]) -> None:
        assert self._writer is not None
        try:
            stored = await self._writer.call(self.storage.latest_readings, names)
        except Kamstrup382Error as exc:
            log.warning(
                "could not load the meters' last readings (each meter's next reading is "
                "confirmed by a second attempt): %s",
                exc,
            )
            return
        auto = {m.name for m in self.config.meters if m.protocol is MeterProtocol.AUTO}
        if wanted := [name for name in names if name in auto]:
            with contextlib.suppress(Kamstrup382Error):  # else detected again
                self.protocols.load(await self._writer.call(self.storage.known_protocols, wanted))
        mode_a = {n: r for n, r in stored.items() if isinstance(r, ReadingRecord)}
        self.history.load(mode_a.values())
        self.kmp_history.load(r for r in stored.values() if isinstance(r, KmpReadingRecord))
        self.pool.load_hints({name: record.bcc_algorithm for name, record in mode_a.items()})

    async def _remember_protocol(self, meter: str, found: Found | None) -> None:
        """Keep what auto found for ``meter`` in the storage (``None``: drop it)."""
        if self._writer is not None:
            try:
                if found is None:
                    await self._writer.call(self.storage.forget_protocols, [meter])
                else:
                    await self._writer.call(self.storage.remember_protocol, meter, *stored(found))
            except Kamstrup382Error as exc:
                done = "dropped from" if found is None else "kept in"
                log.warning(
                    "meter %s: what auto found was not %s the storage: %s", meter, done, exc
                )

    async def close(self) -> None:
        """Store what is pending (what the storage refuses is spilled: :attr:`unstored`), close
        the connections kept, stop the outputs and the storage thread."""
        await self.pulse_inputs.close()
        await self.tariffs.close()
        await self._gates.close()
        await self.pool.close()
        if self._writer is not None:
            await self._writer.close()
            writer = self._writer
            self.unstored, self.unstored_readings = writer.spilled, writer.spilled_readings
            self.lost = writer.lost
            self._writer = None
            self._leases = None
        if self._outputs_started:
            for output in self.outputs:
                try:
                    await output.stop()
                except Exception:
                    log.exception("output %s failed to stop", output.name)
            self._outputs_started = False
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- running ---------------------------------------------------------------------------------
    def due(self, now: datetime) -> dict[tuple[datetime, timedelta], list[MeterConfig]]:
        """The meters grouped by (slot, interval) for the time ``now``."""
        groups: dict[tuple[datetime, timedelta], list[MeterConfig]] = defaultdict(list)
        for meter in self.config.meters:
            groups[(slot_of(now, meter.interval), meter.interval)].append(meter)
        return dict(groups)

    async def run_once(self, at: datetime | None = None) -> CycleResult:
        """Read every meter once for its current slot (no jitter) and store the results.

        ``at``: a time of the clock from which the requests go out; the meters are claimed and
        connected before it (the result's ``started`` is then ``at``).
        """
        await self.start()
        now = self.clock.now()
        started = time.monotonic()
        if at is not None and at > now:
            started += self.clock.real_seconds(at - now)
        groups = self.due(at if at is not None else now)
        parts = await asyncio.gather(
            *(
                self._run_slot(slot, interval, meters, stop=None, once=True, at=at)
                for (slot, interval), meters in groups.items()
            )
        )
        assert self._writer is not None
        await self._writer.drain(bounded=True)  # a failing storage: tried, then spilled
        return CycleResult.merge(parts, started, time.monotonic())

    async def run(self, stop: asyncio.Event) -> None:
        """Read on schedule until ``stop`` is set; then finish within ``grace`` and close.

        A collector started in the middle of a slot reads that slot right away. A slot is
        begun :func:`connect_ahead` before its start: its meters are claimed and connected then,
        their requests go out at their start.
        """
        await self.start()
        self._running_since = self.clock.now()
        tasks: set[asyncio.Task[CycleResult]] = set()
        #: per (slot, interval): the meters whose readouts of that slot have begun
        begun: dict[tuple[datetime, timedelta], set[str]] = {}
        try:
            while not stop.is_set():
                self._reconfigured.clear()
                now = self.clock.now()
                groups: dict[tuple[datetime, timedelta], list[MeterConfig]] = defaultdict(list)
                for meter in self.config.meters:
                    ahead = now + connect_ahead(meter.interval)
                    for when in (now, ahead) if slot_of(ahead, meter.interval) > now else (now,):
                        groups[(slot_of(when, meter.interval), meter.interval)].append(meter)
                for (slot, interval), meters in groups.items():
                    started = begun.setdefault((slot, interval), set())
                    # a meter added by a new configuration joins a slot already begun
                    fresh = [m for m in meters if m.name not in started]
                    if not fresh:
                        continue
                    started.update(m.name for m in fresh)
                    task = asyncio.create_task(
                        self._logged_slot(slot, interval, fresh, stop),
                        name=f"k382-slot-{slot.isoformat()}",
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                begun = {key: names for key, names in begun.items() if key[0] + key[1] > now}
                wake = min(
                    next_slot(now + connect_ahead(m.interval), m.interval)
                    - connect_ahead(m.interval)
                    for m in self.config.meters
                )
                await wait_first(
                    self.clock.sleep_until(wake), stop.wait(), self._reconfigured.wait()
                )
        finally:
            await self._shutdown(tasks)

    async def reload(self, config: Config) -> ConfigChange:
        """Take the meters of ``config`` (SIGHUP): added ones are read from their next slot (the
        current one if it is still running), removed ones are no longer read once their
        readouts in flight end, changed ones are read with their new settings from their next
        readout. Other tables are applied by a restart only: the result names them."""
        change = compare(self.config, config)
        if not change.meters_changed:
            return change
        self.config = replace(self.config, meters=config.meters)
        self.pool.update(config.meters)
        self.history.forget(change.removed)
        self.kmp_history.forget(change.removed)
        self.protocols.configure(config.meters)  # forgets the meters removed or changed
        if change.added and self._writer is not None:
            await self._load_history_of([m.name for m in change.added])
        for output in self.outputs:
            output.meters_changed(config.meters)
        self._reconfigured.set()
        return change

    async def _shutdown(self, tasks: set[asyncio.Task[CycleResult]]) -> None:
        pending = set(tasks)
        if pending:
            grace = self.config.collector.grace
            log.info("stopping: %d slot(s) in flight, %.1f s grace", len(pending), grace)
            _, pending = (
                await asyncio.wait(pending, timeout=grace) if grace > 0 else (set(), pending)
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning("abandoned the readouts still in flight after %.1f s", grace)
        await self.close()

    async def _logged_slot(
        self, slot: datetime, interval: timedelta, meters: list[MeterConfig], stop: asyncio.Event
    ) -> CycleResult:
        started = time.monotonic()
        try:
            part = await self._run_slot(slot, interval, meters, stop=stop, once=False)
        except Exception:  # a bug must not stop the schedule; say so loudly
            log.exception("slot %s failed", slot.isoformat())
            part = CycleResult(missed=tuple(m.name for m in meters))
        result = CycleResult.merge([part], started, time.monotonic())
        log.info(
            "slot %s: %d read, %d failed, %d missed, %d elsewhere in %.1f s",
            slot.isoformat(),
            len(result.readings),
            len(result.failures),
            len(result.missed),
            len(result.elsewhere),
            result.duration,
        )
        for line in result.summary():
            log.warning("slot %s: %s", slot.isoformat(), line)
        if self.on_slot is not None:
            self.on_slot(slot, result)
        return result

    async def _run_slot(
        self,
        slot: datetime,
        interval: timedelta,
        meters: list[MeterConfig],
        *,
        stop: asyncio.Event | None,
        once: bool,
        at: datetime | None = None,
    ) -> CycleResult:
        state = SlotState(slot, slot + interval, {m.name: m for m in meters}, at=at)
        lines: set[asyncio.Task[None]] = set()

        def dispatch(names: Iterable[str]) -> None:
            by_line: dict[str, list[MeterConfig]] = defaultdict(list)
            for name in names:
                if name in state.handled or name not in state.meters:
                    continue
                state.handled.add(name)
                meter = state.meters[name]
                by_line[meter.shared_line].append(meter)
            for line, line_meters in by_line.items():
                lines.add(
                    asyncio.create_task(self._read_line(state, line, line_meters, stop, once))
                )

        leases = self._leases
        try:
            if leases is None:
                dispatch(state.meters)
            while leases is not None:  # claim, then claim again (and renew) during the slot
                renew = [n for n in state.handled if n not in state.finished]
                unclaimed = [m for n, m in state.meters.items() if n not in state.handled]
                await leases.claim(state.slot, unclaimed, renew, dispatch)
                if stop is not None and stop.is_set():
                    break
                running = {task for task in lines if not task.done()}
                if once and not running:
                    break
                if self.clock.now() >= state.end:
                    break
                waits: list[Awaitable[object]] = [asyncio.sleep(leases.reclaim_every)]
                if stop is not None:
                    waits.append(stop.wait())
                if once:
                    waits.append(asyncio.wait(running))
                await wait_first(*waits)
            if lines:
                await asyncio.gather(*lines)
        finally:
            for task in lines:
                task.cancel()
            await asyncio.gather(*lines, return_exceptions=True)
            # in-flight readouts abandoned: nothing of them is stored; give their claims back
            if leases is not None:
                await leases.release(state.slot, state.unread())
        return state.result()

    async def _read_line(
        self,
        state: SlotState,
        line: str,
        meters: list[MeterConfig],
        stop: asyncio.Event | None,
        once: bool,
    ) -> None:
        """Read ``meters`` (all on ``line``) one after the other, in jitter order."""
        lock = self._locks.setdefault(line, asyncio.Lock())
        if once:
            order = [(state.at or state.slot, meter) for meter in meters]
        else:
            order = sorted(
                ((state.slot + jitter_offset(m.name, state.slot, m.jitter), m) for m in meters),
                key=lambda item: item[0],
            )
        assert self._writer is not None
        for index, (start_at, meter) in enumerate(order):
            # connected ahead of its start, under the line's lock: one connection per line
            connect_at = start_at - connect_ahead(meter.interval)
            if connect_at > self.clock.now():
                await self.clock.sleep_until(connect_at)
            async with lock:
                now = self.clock.now()
                late = not once and now >= state.end
                stopping = stop is not None and stop.is_set()
                joined = self._running_since
                if late and not stopping and index == 0 and joined and joined > state.slot:
                    # not running when the slot began, and it ended before this line's first
                    # turn: not "missed" (nothing fell behind), just not this run's slot
                    state.finished.update(m.name for _, m in order)
                    log.info(
                        "slot %s: joined %.3f s before its end; not read on line %s: %s",
                        state.slot.isoformat(),
                        (state.end - joined).total_seconds(),
                        line,
                        ", ".join(m.name for _, m in order),
                    )
                    return
                if late or stopping:
                    rest = [m.name for _, m in order[index:]]
                    state.not_read(rest)
                    if not stopping:
                        # stored, so that status and health plots show it (not on shutdown:
                        # the meters are given back to other collectors instead)
                        last = self._line_last.get(line)
                        message = missed_message(state.slot, state.end, line, last, now)
                        for name in rest:
                            missed = missed_record(name, state.slot, now, message)
                            state.results.append(missed)
                            self._writer.put(missed)
                    return
                result = await self.read_meter(meter, state.slot, start_at, stop)
                if result is None:  # stopped while connected ahead of the start: given back
                    state.not_read(m.name for _, m in order[index:])
                    return
                self._line_last[line] = (meter.name, self.clock.now())
            state.finished.add(meter.name)
            if not isinstance(result, FailureRecord):
                self.pulse_inputs.readout(result)
            state.results.append(result)
            self._writer.put(result)

    async def read_meter(
        self,
        meter: MeterConfig,
        slot: datetime,
        start_at: datetime | None = None,
        stop: asyncio.Event | None = None,
    ) -> Result | None:
        """One readout of ``meter`` (with the reader's retries) as a record for ``slot``.

        ``start_at``: the connection is opened now, the request sent at ``start_at`` (with all
        others due then, by one :class:`.RequestGate`); None when ``stop`` is set before then
        (nothing was sent).
        """
        clock_start = self.clock.now()
        mono_start = time.monotonic()
        timed: TimedGate | None = None

        def read_at(reading: Reading | KmpReading) -> datetime:
            # on a given (virtual) clock: when the readout began on that clock
            if self._wall_clock:
                return reading.requested_at
            if timed is not None and timed.opened_at is not None:
                return timed.opened_at
            return clock_start

        try:
            kmp = await self.protocols.settings(meter)
            async with self.pool.reader(meter, kmp) as reader:
                await self.pool.connect(reader)
                if start_at is not None and start_at > self.clock.now():
                    timed = self._gates.at(start_at, stop)
                try:
                    gate = timed.gate if timed is not None else None
                    record = await judged_readout(
                        meter.name,
                        slot,
                        reader,
                        gate=gate,
                        read_at=read_at,
                        history=self.history,
                        kmp_history=self.kmp_history,
                    )
                    self.protocols.readout_ended(meter.name, None)
                    return record
                except GateClosed:
                    return None
                except (Exception, asyncio.CancelledError) as exc:
                    if not isinstance(exc, Kamstrup382Error):  # cancelled, or a bug: the
                        self.pool.retire(meter)  # line's state is unknown, a new one next time
                    raise
                finally:
                    # what the readout taught of the BCC algorithm (a failed one too: it may
                    # leave a suspicion for the next readout to confirm or clear)
                    self.pool.remember(meter.name, reader)
                    if timed is not None and timed.opened_at is not None:
                        clock_start, mono_start = timed.opened_at, timed.gate.opened_mono
        except (Kamstrup382Error, OSError) as exc:
            duration = time.monotonic() - mono_start
            if self.protocols.readout_ended(meter.name, exc):  # auto: detected again
                await self._remember_protocol(meter.name, None)
            return failure_record(meter.name, slot, exc, self.clock.now(), duration)
