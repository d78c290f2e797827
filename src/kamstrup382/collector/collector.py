"""The collector: reads the configured meters once per wall-clock slot and stores every attempt.

- Slots are aligned to the wall clock of the given clock (see :mod:`.schedule`); the slot start
  is the key that makes storage idempotent, so a reading stored twice is kept once.
- One task per line and slot: meters that share a line (``shared_line``) are read one after the
  other, under one lock per line; all lines run in parallel in one event loop.
- Retries and backoff are the reader's own policy (``AsyncReader(retries=..., backoff=...)``).
- Results go to a :class:`.BatchWriter` (one transaction per batch, in a worker thread); the
  outputs get each batch after it is stored.
- With PostgreSQL, meters are claimed per slot through the storage's leases
  (``storage.claim``): each collector reads only what it claimed, renews its claims while it
  works and claims again during the slot, so that meters of a dead collector are taken over once
  their lease has expired.
- A meter whose turn on its line comes after its slot ended (the readout before it overran,
  or the collector fell behind) is not read in that slot: it is stored as a failure of kind
  ``missed`` (no attempt, with the reason), so that status and health plots show it.
- Each meter's readout starts in ``auto`` BCC mode from the algorithm the meter used last
  (``bcc_hint``): remembered after each reading, loaded from the storage at start.
- On shutdown in-flight readouts get ``grace`` seconds to finish; then they are abandoned. Only
  complete readouts and failures become rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType

from kamstrup382.clock import Clock, SystemClock
from kamstrup382.collector.config import Config, MeterConfig
from kamstrup382.collector.schedule import jitter_offset, next_slot, slot_of
from kamstrup382.collector.writer import BatchWriter
from kamstrup382.errors import Kamstrup382Error
from kamstrup382.outputs.base import Output
from kamstrup382.protocol import BccAlgorithm
from kamstrup382.reader import AsyncReader
from kamstrup382.reader.aio import GateClosed, RequestGate
from kamstrup382.reading import Reading
from kamstrup382.storage import MISSED, FailureRecord, ReadingRecord, Storage

__all__ = [
    "GC_THRESHOLD",
    "SWITCH_INTERVAL",
    "Collector",
    "CycleResult",
    "collector_runtime",
    "raise_file_limit",
]

log = logging.getLogger(__name__)

Result = ReadingRecord | FailureRecord

#: Lines claimed per call of ``storage.claim``.
CLAIM_LINES = 64
#: Connections being set up at once: 10,000 simultaneous connects starved the event loop and
#: timed out; with 128 at once the last of 10,000 requests went out 2.5-7.5 s after the first,
#: with 1,024 the 10,000-meter benchmark's cycle was shorter (ratio 1.38-1.51 against 1.53).
CONNECTS_AT_ONCE = 1024
#: Seconds before a meter's start (slot boundary plus jitter) its connection is opened, at most
#: a tenth of its interval: the request then goes out at the start, not after a ramp of
#: thousands of connects. The slot's meters are claimed before (PostgreSQL leases).
CONNECT_AHEAD = 5.0


def connect_ahead(interval: timedelta) -> timedelta:
    """How long before its start a meter with ``interval`` is connected."""
    return min(timedelta(seconds=CONNECT_AHEAD), interval / 10)


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle did.

    ``failures``: readouts that failed. ``missed``: meters due that were not read because their
    slot ended before their turn on the line came (``missed_records``: the failures of kind
    ``missed`` stored for them), or because the collector shut down. ``elsewhere``: meters due
    that another collector holds (PostgreSQL leases).
    """

    readings: tuple[ReadingRecord, ...] = ()
    failures: tuple[FailureRecord, ...] = ()
    missed: tuple[str, ...] = ()
    elsewhere: tuple[str, ...] = ()
    missed_records: tuple[FailureRecord, ...] = ()
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every meter this collector took on was read."""
        return not self.failures and not self.missed

    @property
    def duration(self) -> float:
        return self.finished - self.started

    def summary(self) -> list[str]:
        """One line per meter not read: ``name: kind: message``."""
        lines = [f"{f.meter}: {f.kind}: {f.message}" for f in self.failures]
        reasons = {f.meter: f.message for f in self.missed_records}
        lines += [
            f"{name}: {MISSED}: {reasons.get(name, 'not read in its slot (shutting down)')}"
            for name in self.missed
        ]
        return lines

    @classmethod
    def merge(cls, parts: Sequence[CycleResult], started: float, finished: float) -> CycleResult:
        return cls(
            readings=tuple(r for p in parts for r in p.readings),
            failures=tuple(f for p in parts for f in p.failures),
            missed=tuple(m for p in parts for m in p.missed),
            missed_records=tuple(f for p in parts for f in p.missed_records),
            elsewhere=tuple(m for p in parts for m in p.elsewhere),
            started=started,
            finished=finished,
        )


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard limit (one socket per TCP meter)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


#: The garbage collector's thresholds while collecting (``gc.set_threshold``). A cycle of 10,000
#: readouts allocates millions of short-lived objects (chunks, futures, timer handles) that die
#: young; with the default first threshold of 700 the cyclic collector ran 1,118 times in one
#: 10,000-meter benchmark run, 1.31 s of CPU (measured with ``gc.callbacks``); with 50,000: 12
#: times, 0.22 s.
GC_THRESHOLD = (50_000, 20, 100)
#: The interpreter's thread switch interval while collecting (``sys.setswitchinterval``; Python's
#: default is 5 ms). The storage thread gives up the interpreter's lock for each statement it
#: runs in SQLite or PostgreSQL and must take it back from the event loop's thread, which is
#: busy without a pause while thousands of readouts end at once: at 5 ms a wait, 10,000 readings
#: took 0.35 s to store in a benchmark cycle after the last readout ended, for 0.15 s of CPU;
#: at 1 ms the batches are stored while the readouts still end.
SWITCH_INTERVAL = 0.001


@contextlib.contextmanager
def collector_runtime(
    threshold: tuple[int, int, int] = GC_THRESHOLD, switch_interval: float = SWITCH_INTERVAL
) -> Iterator[None]:
    """Run the block with the garbage collector's thresholds at ``threshold`` and the thread
    switch interval at ``switch_interval``, then restore both.

    For the process that runs a :class:`Collector` (``k382 collect``, the benchmark).
    """
    before = gc.get_threshold()
    interval = sys.getswitchinterval()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(switch_interval)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        sys.setswitchinterval(interval)


class _Stopped(Exception):
    """Shutdown while a meter was connected ahead of its start (internal)."""


@dataclass
class _SlotState:
    """Bookkeeping of one slot in this collector."""

    slot: datetime
    end: datetime
    meters: dict[str, MeterConfig]
    #: ``run_once(at=...)``: when the requests go out (otherwise at once).
    at: datetime | None = None
    handled: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    results: list[Result] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _Gate:
    """A :class:`RequestGate` for one start time, and when it opened."""

    gate: RequestGate
    stop: asyncio.Event | None
    clock_at: datetime | None = None
    mono_at: float = 0.0


class Collector:
    """Reads ``config.meters`` on their schedule into ``storage`` and hands batches to ``outputs``.

    Use as ``async with Collector(...) as c:`` (or call ``start``/``close``); ``run_once`` and
    ``run`` start it when needed.
    """

    def __init__(
        self,
        config: Config,
        storage: Storage,
        outputs: Iterable[Output] = (),
        *,
        clock: Clock | None = None,
        collector_id: str | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.outputs = tuple(outputs)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.collector_id = collector_id or config.collector.id
        self.leases = storage.url.startswith(("postgresql:", "postgres:"))
        settings = config.collector
        self.lease = settings.lease
        self.reclaim_every = min(max(settings.lease.total_seconds() / 4, 0.1), 30.0)
        self._locks: dict[str, asyncio.Lock] = {}
        self._connecting: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writer: BatchWriter | None = None
        self._outputs_started = False
        #: Per meter: the BCC algorithm of its last reading, the next reader's ``bcc_hint``.
        self._bcc: dict[str, BccAlgorithm] = {}
        #: Per line: the meter read last on it and when that readout ended (clock time).
        self._line_last: dict[str, tuple[str, datetime]] = {}
        #: Per start time: the gate its prepared requests wait behind (``read_meter``).
        self._gates: dict[datetime, _Gate] = {}
        self._gate_tasks: set[asyncio.Task[None]] = set()
        #: ``keep_connected``: the readers kept open between readouts, by meter; and those
        #: given up in the middle of a readout (cancelled), closed with the collector.
        self._kept: dict[str, AsyncReader] = {}
        self._retired: list[AsyncReader] = []
        self._line_sizes = Counter(meter.shared_line for meter in config.meters)

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._writer is not None:
            return
        raise_file_limit()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k382-storage")
        settings = self.config.collector
        self._writer = BatchWriter(
            self.storage,
            self.outputs,
            self._executor,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
        )
        self._writer.start()
        if settings.keep_connected and self.leases:
            log.warning(
                "collector.keep_connected is ignored with PostgreSQL: the meters are shared "
                "with other collectors, each connection is closed after its readout"
            )
        await self._load_bcc()
        for output in self.outputs:
            await output.start(self.storage)
        self._outputs_started = True

    async def _load_bcc(self) -> None:
        """The BCC algorithm of each meter's last stored reading (the readers' hints)."""
        assert self._writer is not None
        names = [m.name for m in self.config.meters]
        try:
            stored = await self._writer.call(self.storage.last_bcc_algorithms, names)
        except Kamstrup382Error as exc:
            log.warning("could not load the meters' last BCC algorithms: %s", exc)
            return
        for name, value in stored.items():
            try:
                self._bcc.setdefault(name, BccAlgorithm(value))
            except ValueError:
                log.warning("meter %s: stored BCC algorithm %r ignored", name, value)

    async def close(self) -> None:
        """Store what is pending, close the connections kept, stop the outputs and the storage
        thread."""
        gates = list(self._gate_tasks)
        for task in gates:
            task.cancel()
        await asyncio.gather(*gates, return_exceptions=True)
        readers = [*self._kept.values(), *self._retired]
        self._kept.clear()
        self._retired.clear()
        for reader in readers:
            await reader.close()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
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
        await self._writer.drain()
        return CycleResult.merge(parts, started, time.monotonic())

    async def run(self, stop: asyncio.Event) -> None:
        """Read on schedule until ``stop`` is set; then finish within ``grace`` and close.

        A collector started in the middle of a slot reads that slot right away. A slot is
        begun :func:`connect_ahead` before its start: its meters are claimed and connected then,
        their requests go out at their start.
        """
        await self.start()
        tasks: set[asyncio.Task[CycleResult]] = set()
        begun: set[tuple[datetime, timedelta]] = set()
        try:
            while not stop.is_set():
                now = self.clock.now()
                groups: dict[tuple[datetime, timedelta], list[MeterConfig]] = defaultdict(list)
                for meter in self.config.meters:
                    ahead = now + connect_ahead(meter.interval)
                    for when in (now, ahead) if slot_of(ahead, meter.interval) > now else (now,):
                        groups[(slot_of(when, meter.interval), meter.interval)].append(meter)
                for (slot, interval), meters in groups.items():
                    if (slot, interval) in begun:
                        continue
                    begun.add((slot, interval))
                    task = asyncio.create_task(
                        self._logged_slot(slot, interval, meters, stop),
                        name=f"k382-slot-{slot.isoformat()}",
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                begun = {key for key in begun if key[0] + key[1] > now}
                wake = min(
                    next_slot(now + connect_ahead(m.interval), m.interval)
                    - connect_ahead(m.interval)
                    for m in self.config.meters
                )
                await _first(self.clock.sleep_until(wake), stop.wait())
        finally:
            await self._shutdown(tasks)

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
        state = _SlotState(slot, slot + interval, {m.name: m for m in meters}, at=at)
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

        try:
            while True:
                if self.leases:
                    await self._claim(state, dispatch)
                else:
                    dispatch(state.meters)
                    break
                if stop is not None and stop.is_set():
                    break
                running = {task for task in lines if not task.done()}
                if once and not running:
                    break
                if self.clock.now() >= state.end:
                    break
                waits: list[Awaitable[object]] = [asyncio.sleep(self.reclaim_every)]
                if stop is not None:
                    waits.append(stop.wait())
                if once:
                    waits.append(asyncio.wait(running))
                await _first(*waits)
            if lines:
                await asyncio.gather(*lines)
        finally:
            for task in lines:
                task.cancel()
            await asyncio.gather(*lines, return_exceptions=True)
            # in-flight readouts abandoned: nothing of them is stored; give their claims back
            await self._release(state)
        readings = tuple(r for r in state.results if isinstance(r, ReadingRecord))
        failures = tuple(
            r for r in state.results if isinstance(r, FailureRecord) and r.kind != MISSED
        )
        missed_records = tuple(
            r for r in state.results if isinstance(r, FailureRecord) and r.kind == MISSED
        )
        elsewhere = tuple(name for name in state.meters if name not in state.handled)
        return CycleResult(
            readings, failures, tuple(state.missed), elsewhere, missed_records=missed_records
        )

    async def _claim(self, state: _SlotState, dispatch: Callable[[Iterable[str]], None]) -> None:
        """Claim the slot's meters not yet handled here, a few lines at a time, and renew the
        claims on those still being read.

        Whole lines are claimed together, in an order shuffled per collector and slot, so that
        collectors starting a slot together share the meters instead of one taking all.
        """
        assert self._writer is not None
        claim = self.storage.claim
        renew = [n for n in state.handled if n not in state.finished]
        by_line: dict[str, list[str]] = defaultdict(list)
        for name, meter in state.meters.items():
            if name not in state.handled:
                by_line[meter.shared_line].append(name)
        order = sorted(by_line)
        random.Random(f"{self.collector_id}|{state.slot.isoformat()}").shuffle(order)
        chunks = [
            [name for line in order[i : i + CLAIM_LINES] for name in by_line[line]]
            for i in range(0, len(order), CLAIM_LINES)
        ]
        if renew:
            chunks = [renew + (chunks[0] if chunks else []), *chunks[1:]]
        for chunk in chunks:
            try:
                claimed: list[str] = await self._writer.call(
                    claim, self.collector_id, chunk, state.slot, self.lease
                )
            except Kamstrup382Error as exc:
                log.warning("claiming meters for slot %s failed: %s", state.slot.isoformat(), exc)
                return
            dispatch(claimed)

    async def _release(self, state: _SlotState) -> None:
        """Give back claimed meters of the slot that got no result here (shutdown, abandon)."""
        if not self.leases or self._writer is None:
            return
        done = {result.meter for result in state.results}
        unread = [name for name in state.handled if name not in done]
        if not unread:
            return
        try:
            await self._writer.call(self.storage.release, self.collector_id, unread, state.slot)
        except Kamstrup382Error as exc:
            log.warning("releasing %d meters failed (they expire instead): %s", len(unread), exc)

    async def _read_line(
        self,
        state: _SlotState,
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
                if late or (stop is not None and stop.is_set()):
                    rest = [m.name for _, m in order[index:]]
                    state.missed.extend(rest)
                    state.finished.update(rest)
                    if late and not (stop is not None and stop.is_set()):
                        # stored, so that status and health plots show it (not on shutdown:
                        # the meters are given back to other collectors instead)
                        message = self._missed_message(line, state, now)
                        for name in rest:
                            missed = FailureRecord(
                                meter=name,
                                slot=state.slot,
                                failed_at=now,
                                kind=MISSED,
                                message=message,
                                attempts=0,
                                duration=0.0,
                            )
                            state.results.append(missed)
                            self._writer.put(missed)
                    return
                try:
                    result = await self.read_meter(meter, state.slot, start_at, stop)
                except _Stopped:  # while connected ahead of the start: not read, given back
                    rest = [m.name for _, m in order[index:]]
                    state.missed.extend(rest)
                    state.finished.update(rest)
                    return
                self._line_last[line] = (meter.name, self.clock.now())
            state.finished.add(meter.name)
            state.results.append(result)
            self._writer.put(result)

    def _missed_message(self, line: str, state: _SlotState, now: datetime) -> str:
        """Why the meters left on ``line`` were not read in ``state``'s slot."""
        slot = state.slot.isoformat()
        last = self._line_last.get(line)
        if last is not None and last[1] >= state.end:
            return (
                f"not read in slot {slot}: line {line} was busy until the slot ended "
                f"(the readout of {last[0]} ran until {last[1].isoformat()}, "
                f"the slot ended at {state.end.isoformat()})"
            )
        late = (now - state.end).total_seconds()
        return (
            f"not read in slot {slot}: the collector fell behind "
            f"(the meter's turn came {late:.1f} s after the slot ended)"
        )

    async def read_meter(
        self,
        meter: MeterConfig,
        slot: datetime,
        start_at: datetime | None = None,
        stop: asyncio.Event | None = None,
    ) -> Result:
        """One readout of ``meter`` (with the reader's retries) as a record for ``slot``.

        ``start_at``: the connection is opened now, the request sent at ``start_at``; raises
        :class:`_Stopped` when ``stop`` is set before then (nothing was sent).
        """
        clock_start = self.clock.now()
        mono_start = time.monotonic()
        try:
            async with self._reader(meter) as reader:
                if self._connecting is None:
                    self._connecting = asyncio.Semaphore(CONNECTS_AT_ONCE)
                async with self._connecting:
                    # a failed open is retried by read() within the meter's retries
                    with contextlib.suppress(Kamstrup382Error):
                        await reader.open()
                gate = None
                if start_at is not None and start_at > self.clock.now():
                    # prepared now, the request written with all others due then, by one
                    # callback at ``start_at`` (see RequestGate)
                    gate = self._gate(start_at, stop)
                try:
                    reading = await reader.read(gate=gate.gate if gate is not None else None)
                except GateClosed:
                    raise _Stopped from None
                except (Exception, asyncio.CancelledError) as exc:
                    if not isinstance(exc, Kamstrup382Error):  # cancelled, or a bug: the
                        self._retire(meter)  # line's state is unknown, a new one next time
                    raise
                finally:
                    if gate is not None and gate.clock_at is not None:
                        clock_start, mono_start = gate.clock_at, gate.mono_at
            self._bcc[meter.name] = reading.bcc_algorithm
            return self._reading_record(meter, slot, reading, clock_start)
        except Kamstrup382Error as exc:
            kind = exc.kind
            # set by the reader on what it raises after its retries; an error raised outside
            # them (e.g. while setting the reader up) ended the collector's one attempt
            attempts = exc.attempts if exc.attempts is not None else 1
            message = str(exc) or type(exc).__name__
        except OSError as exc:  # the readers translate these; kept as a safety net
            kind, attempts = "connection", 1
            message = str(exc) or type(exc).__name__
        return FailureRecord(
            meter=meter.name,
            slot=slot,
            failed_at=self.clock.now(),
            kind=kind,
            message=message,
            attempts=attempts,
            duration=time.monotonic() - mono_start,
        )

    def _reader(self, meter: MeterConfig) -> contextlib.AbstractAsyncContextManager[AsyncReader]:
        """The reader of ``meter`` for one readout: a new one, closed after it; or, with
        ``keep_connected`` for a meter alone on its line, the one kept open since the last."""
        kept = self._kept.get(meter.name)
        if kept is not None:
            return contextlib.nullcontext(kept)
        reader = AsyncReader(
            meter.port,
            line=meter.line,
            bcc=meter.bcc,
            timing=meter.timing,
            retry=meter.retry,
            bcc_hint=self._bcc.get(meter.name),
        )
        if self._keeps(meter):
            self._kept[meter.name] = reader
            return contextlib.nullcontext(reader)
        return reader

    def _retire(self, meter: MeterConfig) -> None:
        reader = self._kept.pop(meter.name, None)
        if reader is not None:
            self._retired.append(reader)

    def _keeps(self, meter: MeterConfig) -> bool:
        # not with leases: the next slot's claim may go to another collector, whose connect
        # a gateway taking one client at a time would refuse while this one holds it
        return (
            self.config.collector.keep_connected
            and not self.leases
            and self._line_sizes[meter.shared_line] == 1
        )

    def _gate(self, start_at: datetime, stop: asyncio.Event | None) -> _Gate:
        """The request gate of the readouts that start at ``start_at`` (opened by one task)."""
        gate = self._gates.get(start_at)
        if gate is None or gate.stop is not stop:
            gate = _Gate(RequestGate(), stop)
            self._gates[start_at] = gate
            task = asyncio.create_task(self._open_gate(start_at, gate))
            self._gate_tasks.add(task)
            task.add_done_callback(self._gate_tasks.discard)
        return gate

    async def _open_gate(self, start_at: datetime, gate: _Gate) -> None:
        opened = False
        try:
            if gate.stop is None:
                await self.clock.sleep_until(start_at)
            else:
                await _first(self.clock.sleep_until(start_at), gate.stop.wait())
                if gate.stop.is_set():
                    return
            gate.clock_at = self.clock.now()
            gate.mono_at = time.monotonic()
            if self._gates.get(start_at) is gate:
                del self._gates[start_at]
            gate.gate.open()
            opened = True
        finally:
            if self._gates.get(start_at) is gate:
                del self._gates[start_at]
            if not opened:
                gate.gate.close()

    def _reading_record(
        self,
        meter: MeterConfig,
        slot: datetime,
        reading: Reading,
        clock_start: datetime,
    ) -> ReadingRecord:
        # on a virtual clock: when the readout began on that clock
        system = isinstance(self.clock, SystemClock)
        read_at = reading.requested_at if system else clock_start
        type_number = reading.identification.type_number
        return ReadingRecord(
            meter=meter.name,
            slot=slot,
            read_at=read_at,
            values=reading.meter_values(),
            identification=str(reading.identification).removeprefix("/"),
            type_number=str(type_number) if type_number is not None else None,
            bcc_algorithm=reading.bcc_algorithm.value,
            raw=reading.raw,
            answer_delay=reading.answer_delay,
            duration=reading.duration,
            attempts=reading.attempts,
        )


async def _first(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` completes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
