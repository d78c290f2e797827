"""Batched, all-or-nothing storage of readout results, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
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
        self._full = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="k382-writer")

    def put(self, result: Result) -> None:
        self._queue.put_nowait(result)
        if self._queue.qsize() >= self.batch_size:
            self._full.set()

    async def drain(self) -> None:
        """Return when every result put so far is stored (or given up at close)."""
        if self._task is not None and self._task.done():
            self._task.result()
        self._full.set()  # no need to wait for a partial batch to fill up
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
            if self._queue.qsize() + 1 < self.batch_size and not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval)
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if self._queue.qsize() < self.batch_size:
                self._full.clear()
            try:
                await self._store(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _store(self, batch: list[Result]) -> None:
        readings = [r for r in batch if isinstance(r, ReadingRecord)]
        failures = [r for r in batch if isinstance(r, FailureRecord)]
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
        self.stored += len(batch)
        for output in self.outputs:
            try:
                await output.publish(readings, failures)
            except Exception:  # an output must not stop the collector
                log.exception("output %s failed to publish", output.name)
