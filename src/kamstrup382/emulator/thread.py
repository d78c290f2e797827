"""An :class:`~kamstrup382.emulator.server.Emulator` in its own thread, for synchronous code.

:class:`EmulatorThread` takes the emulator's arguments, runs it in a thread with its own event
loop, and makes the bookkeeping (``ports``, ``models``, ``log``, ``sent``, ``sent_values``)
and the pulse subscriptions available from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from kamstrup382.emulator.line import Exchange
from kamstrup382.emulator.model import MeterModel, PulseCallback
from kamstrup382.emulator.server import Emulator
from kamstrup382.errors import UsageError
from kamstrup382.protocol import MeterValues

__all__ = ["EmulatorThread"]


class EmulatorThread:
    """An :class:`Emulator` in its own thread and event loop, as a sync context manager.

    Takes the same arguments; ``ports``, ``models``, ``log``, ``sent`` and ``sent_values``
    are available once entered.
    """

    def __init__(self, meters: int | Sequence[MeterModel] = 1, **kwargs: Any) -> None:
        self.emulator = Emulator(meters, **kwargs)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def ports(self) -> list[str]:
        return self.emulator.ports

    @property
    def models(self) -> list[MeterModel]:
        return self.emulator.models

    def log(self, meter: int) -> list[Exchange]:
        return self.emulator.log(meter)

    def sent(self, meter: int) -> list[bytes]:
        return self.emulator.sent(meter)

    def sent_values(self, meter: int) -> list[MeterValues]:
        return self.emulator.sent_values(meter)

    def subscribe_pulses(self, meter: int, callback: PulseCallback) -> Callable[[], None]:
        """:meth:`Emulator.subscribe_pulses` from any thread; ``callback`` runs in the
        emulator's thread (or in a thread that reads a model directly). Returns a thread-safe
        unsubscribe."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            return self._unsubscriber(self.emulator.subscribe_pulses(meter, callback))

        async def subscribe() -> Callable[[], None]:
            return self.emulator.subscribe_pulses(meter, callback)

        return self._unsubscriber(asyncio.run_coroutine_threadsafe(subscribe(), loop).result())

    def _unsubscriber(self, unsubscribe: Callable[[], None]) -> Callable[[], None]:
        def threadsafe() -> None:
            loop, thread = self._loop, self._thread
            if (
                loop is None
                or thread is None
                or not thread.is_alive()
                or threading.current_thread() is thread
            ):
                unsubscribe()
                return

            async def run() -> None:
                unsubscribe()

            try:
                future = asyncio.run_coroutine_threadsafe(run(), loop)
            except RuntimeError:  # the loop has ended: nothing runs any more
                unsubscribe()
                return
            future.result()

        return threadsafe

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise UsageError("this emulator thread has already been started")
        self._thread = threading.Thread(target=self._run, name="k382-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() if it failed there
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator:
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        """Stop the emulator and wait for its thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
