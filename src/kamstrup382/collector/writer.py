"""Batched, all-or-nothing storage of readout results, off the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import TypeVar

from kamstrup382.collector.spill import SpillJournal
from kamstrup382.errors import StorageError
from kamstrup382.outputs.base import Output
from kamstrup382.storage import AnyReading, FailureRecord, KmpReadingRecord, ReadingRecord, Storage

__all__ = ["BatchWriter"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
Result = ReadingRecord | KmpReadingRecord | FailureRecord
#: A batch split into its readings and its failures, as ``Storage.record`` takes them.
Batch = tuple[list[AnyReading], list[FailureRecord]]


class _NotTried(StorageError):
    """A batch the storage thread did not try: one before it failed (order is kept)."""


class BatchWriter:
    """Collects results and stores them in batches, one transaction per batch.

    A batch is stored when it holds ``batch_size`` results or its first result has waited
    ``flush_interval`` seconds. The transaction runs in ``executor`` (one worker thread, so
    that the storage connection is never used by two threads at once). A batch that fails to
    store is kept and tried again, and the batches after it wait for it: batches are stored in
    the order their results came. After a batch is stored, every output gets ``publish``.

    A full batch goes to the storage thread from :meth:`put` itself: when thousands of readouts
    end at once the event loop is busy for a while with them, and a batch handed to a task
    would wait for the loop's next pass (until the last readout ended, in the benchmark's
    cycles). The writer's task only waits for the outcomes, in order, publishes, and tries
    again what failed.

    The hand-over between the two threads is the batches' futures: each batch goes to the
    storage thread with the future of the batch sent before it (while that one is not yet dealt
    with on the loop), and is not tried there when that one failed or was not tried either.
    The loop learns each outcome by awaiting its future; no state is shared otherwise.

    When the storage keeps failing (read-only, full, unreachable), a batch is tried again every
    ``retry_delay`` seconds for as long as the collector runs, but not for ever when it must
    end: while :meth:`close` or a bounded :meth:`drain` waits, a batch is given up after
    ``retries`` tries beyond its first, and the batches after it after one try each (until one
    is stored), so that a shutdown takes one batch's retries, not every batch's. Nor beyond
    memory: when more than ``max_pending`` results wait to be stored, the oldest batch is given
    up after its try. A batch given up
    goes to ``spill`` (the journal, fsynced; :attr:`spilled` counts its results, and the storage
    is given the journal again as soon as it takes a batch); only when the journal cannot be
    written either is it dropped (:attr:`lost`, logged as an error).
    """

    def __init__(
        self,
        storage: Storage,
        outputs: Sequence[Output],
        executor: Executor,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        retry_delay: float = 1.0,
        retries: int = 3,
        max_pending: int = 100_000,
        spill: SpillJournal | None = None,
    ) -> None:
        self.storage = storage
        self.outputs = tuple(outputs)
        self.executor = executor
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_delay = retry_delay
        self.retries = retries
        self.max_pending = max_pending
        self.spill = spill
        #: The outbox queues each new reading goes to: one per output that drains one.
        self.outbox = tuple(output.name for output in self.outputs if output.uses_outbox)
        #: Results stored so far (given up ones not counted).
        self.stored = 0
        #: Results the storage refused that are in the spill journal (stored and no longer
        #: counted once the journal is replayed) / that were dropped.
        self.spilled = 0
        self.lost = 0
        #: Of :attr:`spilled`: readings (the rest are failures).
        self.spilled_readings = 0
        self._replay_due = False  # a journal to store once the storage takes a batch
        # a batch was given up and none stored since: when ending, the rest get one try each
        # (a shutdown must not take the retries of every batch queued)
        self._refusing = False
        self._pending: list[Result] = []  # not yet in a batch
        self._timer: asyncio.TimerHandle | None = None  # flushes a partial batch
        # batches handed to the storage thread, with their outcome (the storage thread's
        # future and the loop's view of it), in order; a batch leaves once the loop is done
        # with it (stored, or tried again until stored or given up)
        self._sent: deque[tuple[Batch, Future[None], asyncio.Future[None]]] = deque()
        self._unstored = 0  # results put and not yet stored (or given up)
        self._wake: asyncio.Future[None] | None = None  # the task waiting for a batch sent
        self._idle: asyncio.Future[None] | None = None  # drain() waiting for _unstored == 0
        self._draining = 0  # drain() calls waiting
        self._bounded = 0  # drain(bounded=True) calls waiting: give up after ``retries``
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="k382-writer")

    def put(self, result: Result) -> None:
        pending = self._pending
        pending.append(result)
        self._unstored += 1
        if len(pending) >= self.batch_size:
            self._send(self.batch_size)
        elif self._draining:  # drain() is waiting for everything put: no need to wait
            self._send(len(pending))
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self._flush)

    def _flush(self) -> None:
        """The timer: the first result waiting has waited ``flush_interval``."""
        self._timer = None
        if self._pending:
            self._send(len(self._pending))

    def _send(self, size: int) -> None:
        """Hand the first ``size`` pending results to the storage thread as one batch."""
        batch, self._pending = self._pending[:size], self._pending[size:]
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        if self._pending:  # (only after a full batch: the rest came just now)
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self._flush)
        split = _split(batch)
        # the batch before it, while the loop is not done with it: if it failed, this one
        # waits for it (the loop tries them again in order)
        before = self._sent[-1][1] if self._sent else None
        done = self.executor.submit(self._record_after, split, before)
        self._sent.append((split, done, asyncio.wrap_future(done)))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _record_after(self, batch: Batch, before: Future[None] | None) -> None:
        """In the storage thread: store ``batch``, unless ``before`` (the batch sent before it)
        failed or was not tried (raises :class:`_NotTried` then).

        ``before`` is done by now (one storage thread runs the batches in the order sent);
        asking for its outcome waits for it otherwise.
        """
        failed = before is not None and (before.cancelled() or before.exception() is not None)
        # not kept in this frame: an exception raised here keeps the frame, and each failed
        # batch's future would hold the one before it, all of them while the storage fails
        del before
        if failed:
            raise _NotTried
        self.storage.record(batch[0], batch[1], outbox=self.outbox)

    async def drain(self, *, bounded: bool = False) -> None:
        """Return when every result put so far is stored (or given up: at close, or with
        ``bounded`` after ``retries`` tries of a failing batch)."""
        if self._task is not None and self._task.done():
            self._task.result()  # the writer failed: say so instead of waiting forever
        if self._pending:
            self._send(len(self._pending))  # no need to wait for a partial batch to fill up
        self._draining += 1
        self._bounded += bounded
        try:
            while self._unstored:
                if self._idle is None or self._idle.done():
                    self._idle = asyncio.get_running_loop().create_future()
                idle = self._idle
                if self._task is None:
                    raise RuntimeError("the batch writer was not started")
                await asyncio.wait({idle, self._task}, return_when=asyncio.FIRST_COMPLETED)
                if self._task.done():
                    self._task.result()
        finally:
            self._draining -= 1
            self._bounded -= bounded

    async def close(self) -> None:
        """Store what is queued, then stop. While closing, a batch that keeps failing is given
        up after ``retries`` more tries (and spilled)."""
        self._closing = True
        await self.drain()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def call(self, function: Callable[..., _T], *args: object, **kwargs: object) -> _T:
        """Run a storage call in the storage thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, functools.partial(function, *args, **kwargs)
        )

    async def _run(self) -> None:
        sent = self._sent
        while True:
            if not sent:
                wake = self._wake = asyncio.get_running_loop().create_future()
                try:
                    await wake
                finally:
                    self._wake = None
                continue
            batch, _done, outcome = sent[0]
            try:
                await outcome
                stored = True
            except Exception as exc:  # StorageError, a bug, or not tried after one of those
                if not isinstance(exc, _NotTried):
                    self._report(exc, batch, tries=1)
                stored = await self._store(batch, tried=0 if isinstance(exc, _NotTried) else 1)
            sent.popleft()  # the next batch sent is tried whatever this one's first outcome was
            try:
                if stored:
                    self._refusing = False
                    await self._stored(*batch)  # published before drain() may return
                    if self._replay_due:
                        await self.replay()
            finally:
                self._unstored -= len(batch[0]) + len(batch[1])
            if not self._unstored and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

    async def _store(self, batch: Batch, *, tried: int) -> bool:
        """Store ``batch`` now, trying again until it is stored (False: given up and spilled)."""
        readings, failures = batch
        tries = tried
        while True:
            ending = self._closing or self._bounded
            if tries:
                if self._unstored > self.max_pending or (
                    ending and (tries > self.retries or self._refusing)
                ):
                    await self._give_up(batch, tries)
                    return False
                await asyncio.sleep(self.retry_delay)
            tries += 1
            try:
                await self.call(self.storage.record, readings, failures, outbox=self.outbox)
                return True
            except Exception as exc:  # StorageError, or a bug: keep the batch, say so
                self._report(exc, batch, tries)

    async def _give_up(self, batch: Batch, tries: int) -> None:
        """``batch`` was refused ``tries`` times: into the journal (or lost, loudly)."""
        count = len(batch[0]) + len(batch[1])
        self._refusing = True
        why = f"after {tries} {'try' if tries == 1 else 'tries'}"
        if self.spill is not None:
            try:
                await self.call(self.spill.append, *batch)
            except StorageError as exc:
                log.error("%d results not stored and not spilled: lost (%s)", count, str(exc))
            else:
                self.spilled += count
                self.spilled_readings += len(batch[0])
                self._replay_due = True
                log.warning(
                    "%d results not stored %s: spilled to %s (stored at the next start, or once "
                    "the storage takes a batch)",
                    count,
                    why,
                    self.spill.path,
                )
                return
        else:
            log.error("%d results not stored %s: lost", count, why)
        self.lost += count

    async def replay(self) -> int | None:
        """Give the storage what the journal holds (an earlier run's spills, at start; this
        run's, once the storage took a batch again): how many results, or None when the storage
        still fails (the journal is kept and given again after the next batch stored)."""
        if self.spill is None:
            return 0
        self._replay_due = False
        try:
            count = await self.call(self.spill.replay, self.storage, outbox=self.outbox)
        except StorageError as exc:
            self._replay_due = True
            log.warning("could not store the spill journal %s yet: %s", self.spill.path, str(exc))
            return None
        # what this run spilled is stored now, with the rest of the journal
        self.spilled = self.spilled_readings = 0
        if count:
            log.warning("stored %d spilled results from %s", count, self.spill.path)
        return count

    @staticmethod
    def _report(exc: Exception, batch: Batch, tries: int) -> None:
        if not isinstance(exc, StorageError):
            log.exception("storage failed unexpectedly", exc_info=exc)
        count = len(batch[0]) + len(batch[1])
        # the message, not the error: a handler that keeps records (a buffer, a test's capture)
        # would keep its traceback, and with it the batch
        log.warning("storing %d results failed (%s); trying again (try %d)", count, str(exc), tries)

    async def _stored(self, readings: list[AnyReading], failures: list[FailureRecord]) -> None:
        self.stored += len(readings) + len(failures)
        for output in self.outputs:
            try:
                await output.publish(readings, failures)
            except Exception:  # an output must not stop the collector
                log.exception("output %s failed to publish", output.name)


def _split(batch: list[Result]) -> Batch:
    readings: list[AnyReading] = [r for r in batch if not isinstance(r, FailureRecord)]
    failures = [r for r in batch if isinstance(r, FailureRecord)]
    return readings, failures
