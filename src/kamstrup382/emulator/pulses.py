"""Pulse out (module pin 3), live: each meter's energy pulses heard at their instants.

A model tells its pulse subscribers about pulses whenever it advances, which a readout does.
To hear them live, without readouts, :class:`LivePulses` runs one small task per meter that
has subscribers (or per meter, with ``live=True``): it asks the model when the next pulse
comes (:meth:`~kamstrup382.emulator.model.MeterModel.next_pulse_at`), sleeps the clock's real
equivalent of that gap and advances the model, which calls the subscribers with the pulse's
exact instant. Meters nobody listens to cost nothing. A subscriber that raises is logged and
does not stop the line or the other subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from kamstrup382.emulator.model import MeterModel, PulseCallback
from kamstrup382.errors import UsageError

__all__ = ["PULSE_HORIZON", "PULSE_POLL", "PULSE_REPLAN", "LivePulses"]

#: How far ahead a pulse task looks for the next pulse (virtual time) before it looks again.
PULSE_HORIZON = timedelta(hours=1)
#: Longest real sleep of a pulse task before it plans again (a load swapped meanwhile).
PULSE_REPLAN = 1.0
#: Shortest real sleep of a pulse task while its clock has not reached the instant (a
#: :class:`~kamstrup382.clock.ManualClock` has no real equivalent: it is polled this often).
PULSE_POLL = 0.001

_log = logging.getLogger(__name__)


class LivePulses:
    """The live pulse-out of a set of meter models, followed while :meth:`start` ed.

    ``live``: follow every meter, also for subscribers added on the models directly;
    otherwise only the meters subscribed through :meth:`subscribe`.
    """

    def __init__(self, models: Sequence[MeterModel], *, live: bool = False) -> None:
        self.models = list(models)
        self.live = bool(live)
        self._subscribers = [0] * len(self.models)
        self._tasks: list[asyncio.Task[None] | None] = [None] * len(self.models)
        self._running = False

    def subscribe(self, meter: int, callback: PulseCallback) -> Callable[[], None]:
        """Call ``callback(count, at)`` for meter ``meter``'s (0-based) pulses, live.

        Runs ``callback`` in the thread that advances the model; returns the function that
        unsubscribes (the meter's task stops with its last subscriber). Call this in the
        loop's thread once started.
        """
        if isinstance(meter, bool) or not isinstance(meter, int):
            raise UsageError(f"meter must be an index, got {meter!r}")
        if not 0 <= meter < len(self.models):
            raise UsageError(f"meter {meter} does not exist (0-{len(self.models) - 1})")

        def guarded(count: int, at: datetime) -> None:
            try:
                callback(count, at)
            except Exception:
                _log.exception("pulse subscriber %r of meter %d failed", callback, meter)

        unsubscribe_model = self.models[meter].subscribe_pulses(guarded)
        self._subscribers[meter] += 1
        self._follow(meter)
        done = False

        def unsubscribe() -> None:
            nonlocal done
            if done:
                return
            done = True
            unsubscribe_model()
            self._subscribers[meter] -= 1
            self._follow(meter)

        return unsubscribe

    def start(self) -> None:
        """Follow the meters that have listeners, in the running loop."""
        self._running = True
        for meter in range(len(self.models)):
            self._follow(meter)

    async def stop(self) -> None:
        """Stop every pulse task and wait for them."""
        self._running = False
        tasks = [task for task in self._tasks if task is not None]
        for meter in range(len(self.models)):
            self._follow(meter)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _follow(self, meter: int) -> None:
        """Start or stop ``meter``'s pulse task as it has listeners or not."""
        wanted = self._running and (self.live or self._subscribers[meter] > 0)
        task = self._tasks[meter]
        if wanted and task is None:
            self._tasks[meter] = asyncio.get_running_loop().create_task(
                _follow_pulses(self.models[meter]), name=f"k382-pulses-{meter}"
            )
        elif not wanted and task is not None:
            task.cancel()
            self._tasks[meter] = None


async def _follow_pulses(model: MeterModel) -> None:
    """Sleep until the next pulse, advance the model (it calls the subscribers); repeat."""
    clock = model.clock
    loop = asyncio.get_running_loop()
    try:
        while True:
            at = model.next_pulse_at(PULSE_HORIZON)
            target = at if at is not None else clock.now() + PULSE_HORIZON
            replan = loop.time() + PULSE_REPLAN
            while (now := clock.now()) < target and (left := replan - loop.time()) > 0:
                wait = clock.real_seconds(target - now)
                await asyncio.sleep(min(max(wait, PULSE_POLL), left))
            model.advance()
    except Exception:  # the load failed (a CSV that ends): readouts will say so
        _log.exception("live pulses of %r stopped", model)
