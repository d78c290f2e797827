"""The background task of an output that publishes from its queue of the durable outbox (MQTT,
InfluxDB): started with the output, woken by each batch, and stopped in the same steps by both.

Stopping (:meth:`OutboxWorker._stop_worker`):

1. the task is told to stop (``_stopping``; ``_wake`` and ``_stop_event`` set, so no wait of
   its own holds it) and given ``stop_timeout`` seconds to empty its queue;
2. past that, the log says so (the rest waits in the outbox for the next start); an output
   that can leave cleanly after the batch in flight (MQTT: say ``offline``, disconnect) is
   told so (``_abandon``) and given ``grace`` seconds more;
3. what still runs is cancelled, and the output's own closing runs (``finish``: give back its
   claims, close its connection, state ``stopped``) whatever happened before, a cancelled
   ``stop`` included.

A task that failed is logged, not raised: a shutdown goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kamstrup382.errors import Kamstrup382Error
from kamstrup382.outputs.health import STARTING, KeepsState, default_state_file
from kamstrup382.storage import Storage

__all__ = ["OutboxWorker", "WorkerLog"]


@dataclass(frozen=True, slots=True)
class WorkerLog:
    """How an output's log names its worker: its logger, what it calls its part of the outbox
    (``outbox``, ``queue``), its task (``publisher``, ``writer``), and what was left undone
    when ``stop_timeout`` ran out (``outbox not flushed``)."""

    log: logging.Logger
    queue: str
    worker: str
    unflushed: str


class OutboxWorker(KeepsState):
    """The task, its events and flags, and the stop both outputs share.

    The output calls :meth:`_keep_worker` in its ``__init__``, :meth:`_begin` then
    :meth:`_run_in_background` in ``start``, :meth:`_stop_worker` in ``stop``, and
    :meth:`_release` to give back its claims (held under :meth:`_client_id`); its task
    watches ``_stopping`` (and ``_abandon``, if it has a clean way out) and waits on ``_wake``
    or ``_stop_event``.
    """

    #: The output's words in the log (a class attribute of each output).
    worker_log: WorkerLog
    #: The output's name: its queue of the outbox, and its word in the log.
    name: str
    _storage: Storage | None
    _task: asyncio.Task[None] | None
    _wake: asyncio.Event | None
    _stop_event: asyncio.Event | None
    _stopping: bool
    _abandon: bool

    def _keep_worker(self, state_file: str | None) -> None:
        self._keep_state(state_file)
        self._storage = None
        self._task = None
        self._wake = None
        self._stop_event = None
        self._stopping = False
        self._abandon = False

    def _client_id(self) -> str:
        """The holder of this output's claims on its queue (its ``client_id``)."""
        raise NotImplementedError

    async def _begin(self, storage: Storage) -> None:
        """``start``'s first steps: new events and flags, the state file (beside a SQLite
        database unless one is named), state ``starting``."""
        self._storage = storage
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopping = False
        self._abandon = False
        if self._state_file is None:
            self._state_file = default_state_file(storage.url, self.name)
        await self._set_state(STARTING)

    def _run_in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(work, name=name)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _stop_worker(
        self,
        stop_timeout: float,
        *,
        finish: Callable[[], Awaitable[None]],
        grace: float | None = None,
    ) -> None:
        """Stop the task in the steps of the module's docstring: ``stop_timeout`` seconds to
        empty the queue, then (``grace`` given) ``_abandon`` and ``grace`` seconds more, then
        cancelled; ``finish`` runs last, always. Nothing to do if the task is not running."""
        task, self._task = self._task, None
        if task is None:
            return
        words = self.worker_log
        self._stopping = True
        self._wake_up()
        if self._stop_event is not None:
            self._stop_event.set()
        try:
            try:
                await asyncio.wait_for(asyncio.shield(task), stop_timeout)
            except TimeoutError:
                words.log.warning(
                    "%s: %s within %.1f s; the rest waits for the next start",
                    self.name,
                    words.unflushed,
                    stop_timeout,
                )
                if grace is not None:
                    self._abandon = True
                    self._wake_up()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(task), grace)
        except Exception:
            words.log.exception("%s: %s failed", self.name, words.worker)
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await finish()

    async def _release(self) -> None:
        """Give back this output's claims on its queue (best effort: else they expire)."""
        if self._storage is None:
            return
        words = self.worker_log
        try:
            await asyncio.to_thread(
                self._storage.outbox_release, self._client_id(), output=self.name
            )
        except Kamstrup382Error as exc:
            words.log.warning(
                "%s: giving back %s claims failed (they expire): %s", self.name, words.queue, exc
            )
