"""Batched, all-or-nothing storage of readout results, off the event loop."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TypeVar

from kamstrup382.errors import StorageError
from kamstrup382.outputs.base import Output
from kamstrup382.storage import FailureRecord, ReadingRecord, Storage

__all__ = ["BatchWriter"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
Result = ReadingRecord | FailureRecord


class BatchWriter:
    """Collects results and stores them in batches, one transaction per batch.

    A batch is stored when it holds ``batch_size`` results or its first result has waited
    ``flush_interval`` seconds. The transaction runs in ``executor`` (one worker thread, so
    that the storage connection is never used by two threads at once). A batch that fails to
    store is kept and tried again; after it is stored, every output gets ``publish``.
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
    ) -> None:
        self.storage = storage
        self.outputs = tuple(outputs)
        self.executor = executor
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_delay = retry_delay
        self.outbox = any(output.uses_outbox for output in self.outputs)
        self.stored = 0
        self._queue: asyncio.Queue[Result] = asyncio.Queue()
        self._full = False  # a batch is full, or drain() wants the partial one now
        self._wake: asyncio.Future[None] | None = None  # the writer waiting for a batch
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="k382-writer")

    def put(self, result: Result) -> None:
        self._queue.put_nowait(result)
        if self._queue.qsize() >= self.batch_size:
            self._set_full()

    def _set_full(self) -> None:
        self._full = True
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def drain(self) -> None:
        """Return when every result put so far is stored (or given up at close)."""
        if self._task is not None and self._task.done():
            self._task.result()
        self._set_full()  # no need to wait for a partial batch to fill up
        await self._queue.join()

    async def close(self) -> None:
        """Store what is queued (a failing storage is tried three more times), then stop."""
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
        while True:
            first = await self._queue.get()
            batch = [first]
            if self._queue.qsize() + 1 < self.batch_size and not self._full:
                await self._until_full()
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batches = [batch]
            # the full batches waiting behind it go to the storage thread in the same call
            # (one transaction each): one wake of this task, not one per batch, while the
            # loop is busy with thousands of readouts ending at once
            while self._queue.qsize() >= self.batch_size:
                batches.append([self._queue.get_nowait() for _ in range(self.batch_size)])
            if self._queue.qsize() < self.batch_size:
                self._full = False
            try:
                await self._store_all(batches)
            finally:
                for _ in range(sum(len(b) for b in batches)):
                    self._queue.task_done()

    async def _until_full(self) -> None:
        """Until a batch is full (or drained), at most ``flush_interval`` seconds.

        A future woken directly by :meth:`put` and one timer: the writer resumes in the loop's
        next pass (an ``asyncio.wait_for`` on an event took three passes, each of them long
        while thousands of readouts complete at once).
        """
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake
        timer = loop.call_later(self.flush_interval, _release, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    async def _store_all(self, batches: list[list[Result]]) -> None:
        """Store ``batches`` in order, one transaction each, in one call to the storage
        thread; from a batch that fails on, one by one with :meth:`_store`'s retries."""
        if len(batches) == 1:
            await self._store(batches[0])
            return
        split = [_split(batch) for batch in batches]
        done = await self.call(self._record_until_failure, split)
        for readings, failures in split[:done]:
            await self._stored(readings, failures)
        for batch in batches[done:]:
            await self._store(batch)

    def _record_until_failure(
        self, split: list[tuple[list[ReadingRecord], list[FailureRecord]]]
    ) -> int:
        """In the storage thread: how many of the batches were stored before one failed."""
        for done, (readings, failures) in enumerate(split):
            try:
                self.storage.record(readings, failures, outbox=self.outbox)
            except Exception:  # tried again (and reported) by _store
                return done
        return len(split)

    async def _store(self, batch: list[Result]) -> None:
        readings, failures = _split(batch)
        tries = 0
        while True:
            tries += 1
            try:
                await self.call(self.storage.record, readings, failures, outbox=self.outbox)
                break
            except Exception as exc:  # StorageError, or a bug: keep the batch, say so
                if not isinstance(exc, StorageError):
                    log.exception("storage failed unexpectedly")
                if self._closing and tries > 3:
                    log.error("gave up storing %d results: %s", len(batch), exc)
                    return
                log.warning("storing %d results failed (%s); trying again", len(batch), exc)
                await asyncio.sleep(self.retry_delay)
        await self._stored(readings, failures)

    async def _stored(self, readings: list[ReadingRecord], failures: list[FailureRecord]) -> None:
        self.stored += len(readings) + len(failures)
        for output in self.outputs:
            try:
                await output.publish(readings, failures)
            except Exception:  # an output must not stop the collector
                log.exception("output %s failed to publish", output.name)


def _release(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)


def _split(batch: list[Result]) -> tuple[list[ReadingRecord], list[FailureRecord]]:
    readings = [r for r in batch if isinstance(r, ReadingRecord)]
    failures = [r for r in batch if isinstance(r, FailureRecord)]
    return readings, failures
