"""Emulated meters served on TCP ports or pseudo-terminals: the :class:`Emulator`.

One event loop serves every meter (one TCP port, or one pty, per meter): asyncio protocols
and timer callbacks, no thread and no task per meter, so that one process serves a fleet
(``bench/bench_emulator.py --many N`` measures it). :class:`Emulator` is the async context
manager that puts the pieces together:

- :mod:`.line`: what a line does with a request (matching, faults, the answer's schedule, the
  pacing at 300 baud 7E1) and the log of :class:`~kamstrup382.emulator.line.Exchange` s;
- :mod:`.tcp` and :mod:`.pty`: where the lines are;
- :mod:`.pulses`: pulse out, live;
- :mod:`.thread`: :class:`~kamstrup382.emulator.thread.EmulatorThread`, one emulator in its
  own thread for synchronous code and tests.

Faults (:class:`~kamstrup382.emulator.faults.Faults`) are drawn per request from a
:class:`random.Random` per meter seeded with ``seed`` and the meter's index.

Every request is logged (:meth:`Emulator.log`): the values, the clean reply, what went on the
wire and the faults applied; :meth:`Emulator.sent` and :meth:`Emulator.sent_values` give the
replies sent (not the silent ones).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Literal

from kamstrup382.clock import Clock, SystemClock
from kamstrup382.emulator.faults import Faults
from kamstrup382.emulator.line import (
    CHARACTERS_PER_SECOND,
    Answering,
    Delay,
    Exchange,
    LineRules,
    ServedMeter,
    check_delay,
)
from kamstrup382.emulator.load import HouseholdLoad, Load
from kamstrup382.emulator.model import MeterModel, PulseCallback
from kamstrup382.emulator.pty import PtyLines
from kamstrup382.emulator.pulses import LivePulses
from kamstrup382.emulator.settings import MeterSettings
from kamstrup382.emulator.tariff import TariffSchedule
from kamstrup382.emulator.tcp import TcpLines
from kamstrup382.errors import UsageError
from kamstrup382.protocol import BccAlgorithm, MeterValues

__all__ = ["Emulator", "Transport"]

Transport = Literal["tcp", "pty"]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Emulator:
    """Emulated Kamstrup 382 meters on TCP ports or ptys, as an async context manager.

    ``meters``: how many (each with default settings, customer numbers counting up from the
    settings' one) or the :class:`MeterModel` objects to serve. ``transport``: ``"tcp"`` (one
    port per meter, consecutive from ``port``; 0 = free ones) or ``"pty"``. ``speed`` divides
    the character time (1 = the true 300 baud). ``delay``: seconds from the end of the request
    to the start of the answer, fixed or ``(lo, hi)`` uniform, inside 0.02-0.6.
    ``eight_bit``: 8-bit bytes with even parity (default on TCP) or 7-bit characters (default
    on ptys). ``bcc``: the meter's algorithm (the Kamstrup sum). ``faults``: a
    :class:`Faults` or its text. ``seed``: faults and random delays. ``clock``, ``load``,
    ``settings``, ``tariff_schedule``: for the models built here (ignored for given models);
    ``load`` defaults to a :class:`HouseholdLoad` seeded per meter. ``write_interval``: group
    due characters into writes at most this often (None: automatic, 0: every character).
    ``exclusive``: one reader per TCP meter at a time (its port refuses others meanwhile);
    None: only when the open-file limit cannot hold two sockets per meter. ``live_pulses``:
    deliver every meter's pulses live even to subscribers added on the models directly
    (:meth:`subscribe_pulses` turns it on per meter by itself). ``on_exchange``: called in
    the loop's thread with the meter's index (0-based) and each :class:`Exchange` once the
    line is done with it (answered, cut short or silent): the ground-truth log.

    ``ports`` lists where each meter is (``socket://HOST:PORT`` or the pty slave's path),
    ``models`` the meter models.
    """

    def __init__(
        self,
        meters: int | Sequence[MeterModel] = 1,
        *,
        transport: Transport = "tcp",
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        delay: Delay = 0.05,
        eight_bit: bool | None = None,
        bcc: BccAlgorithm | str = BccAlgorithm.SUM7,
        faults: Faults | str | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        load: Load | None = None,
        settings: MeterSettings | None = None,
        tariff_schedule: TariffSchedule | str | None = None,
        write_interval: float | None = None,
        exclusive: bool | None = None,
        live_pulses: bool = False,
        on_exchange: Callable[[int, Exchange], None] | None = None,
    ) -> None:
        if transport not in ("tcp", "pty"):
            raise UsageError(f"transport must be 'tcp' or 'pty', got {transport!r}")
        if not (isinstance(speed, int | float) and speed > 0):
            raise UsageError(f"speed must be a positive number, got {speed!r}")
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise UsageError(f"port must be 0-65535, got {port!r}")
        try:
            bcc = BccAlgorithm(bcc)
        except ValueError:
            raise UsageError(f"bcc must be 'sum7' or 'xor', got {bcc!r}") from None
        self.transport: Transport = transport
        self.host = host
        self.port = port
        self.speed = float(speed)
        self.seed = seed
        self.exclusive = exclusive
        self.rules = LineRules(
            character_time=1.0 / CHARACTERS_PER_SECOND / self.speed,
            delay=check_delay(delay),
            eight_bit=(transport == "tcp") if eight_bit is None else bool(eight_bit),
            bcc=bcc,
            faults=Faults.parse(faults) if isinstance(faults, str) else faults or Faults(),
            write_interval=write_interval,
        )
        self.models = self._models(meters, clock, load, settings, tariff_schedule)
        self._meters = [
            ServedMeter(i, model, random.Random(f"k382-emulator:{seed}:{i}"), on_ended=on_exchange)
            for i, model in enumerate(self.models)
        ]
        self.ports: list[str] = []
        self._pulses = LivePulses(self.models, live=live_pulses)
        self._answering: Answering | None = None
        self._tcp: TcpLines | None = None
        self._ptys: PtyLines | None = None
        self._started = False
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what every line shares ---------------------------------------------------------------

    @property
    def bcc(self) -> BccAlgorithm:
        return self.rules.bcc

    @property
    def eight_bit(self) -> bool:
        return self.rules.eight_bit

    @property
    def faults(self) -> Faults:
        return self.rules.faults

    @property
    def delay(self) -> tuple[float, float]:
        return self.rules.delay

    @property
    def character_time(self) -> float:
        return self.rules.character_time

    @property
    def live_pulses(self) -> bool:
        return self._pulses.live

    @staticmethod
    def _models(
        meters: int | Sequence[MeterModel],
        clock: Clock | None,
        load: Load | None,
        settings: MeterSettings | None,
        tariff_schedule: TariffSchedule | str | None,
    ) -> list[MeterModel]:
        if isinstance(meters, int) and not isinstance(meters, bool):
            if meters < 1:
                raise UsageError(f"meters must be at least 1, got {meters}")
            base = settings if settings is not None else MeterSettings()
            clock = clock if clock is not None else SystemClock()
            first = int(base.customer_number)
            models = []
            for i in range(meters):
                own = (
                    dataclasses.replace(base, customer_number=f"{(first + i) % 10**8:08d}")
                    if i
                    else base
                )
                models.append(
                    MeterModel(
                        own,
                        load if load is not None else HouseholdLoad(seed=i),
                        clock,
                        tariff_schedule=tariff_schedule,
                    )
                )
            return models
        if isinstance(meters, bool):
            raise UsageError("meters must be a count or a non-empty sequence of MeterModel")
        models = list(meters)
        if not models or not all(isinstance(m, MeterModel) for m in models):
            raise UsageError("meters must be a count or a non-empty sequence of MeterModel")
        return models

    # -- the bookkeeping tests read ----------------------------------------------------------

    def log(self, meter: int) -> list[Exchange]:
        """Every request to meter ``meter`` (0-based) and its answer, silent ones included."""
        return list(self._meters[meter].log)

    def sent(self, meter: int) -> list[bytes]:
        """Each reply sent by meter ``meter`` (as far as sent), after the faults, in 7-bit form."""
        return [r.sent for r in self._meters[meter].log if not r.silent]

    def sent_values(self, meter: int) -> list[MeterValues]:
        """The register values of each reply in :meth:`sent`."""
        return [r.values for r in self._meters[meter].log if r.values is not None]

    # -- pulse out ----------------------------------------------------------------------------

    def subscribe_pulses(self, meter: int, callback: PulseCallback) -> Callable[[], None]:
        """Call ``callback(count, at)`` for meter ``meter``'s (0-based) pulses on pin 3, live.

        ``count`` pulses were emitted up to ``at``, the exact instant (to the microsecond, on
        the meter's clock) of the last of them; see :meth:`MeterModel.subscribe_pulses`. The
        callback runs in the thread that advanced the model: the emulator's loop for live
        pulses and readouts. Call this in the loop's thread once started (or before start);
        returns the function that unsubscribes (the meter's pulse task stops with its last
        subscriber).
        """
        if self._running and _running_loop() is not self._loop:
            raise UsageError(
                "subscribe_pulses of a running Emulator belongs in its loop's thread "
                "(EmulatorThread.subscribe_pulses works from any thread)"
            )
        return self._pulses.subscribe(meter, callback)

    # -- life cycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open every meter's line (``ports`` says where), start the live pulses."""
        if self._started:
            raise UsageError("this emulator has already been started")
        self._started = True
        self._answering = Answering(self.rules)
        try:
            if self.transport == "tcp":
                self._tcp = TcpLines(
                    self._answering, host=self.host, port=self.port, exclusive=self.exclusive
                )
                self._tcp.start(self._meters)
            else:
                self._ptys = PtyLines(self._answering)
                self._ptys.start(self._meters)
        except BaseException:
            await self.close()
            raise
        self.ports = [m.port for m in self._meters]
        self._running = True
        self._loop = asyncio.get_running_loop()
        for meter in self._meters:
            # the model's reply cache filled now (it is reused while the registers shown stay
            # the same): a burst of requests then costs the snapshot, not the encoding too
            meter.model.snapshot(bcc=self.bcc)
        self._pulses.start()

    async def close(self) -> None:
        """Stop listening, hang up every line, close the ptys."""
        self._running = False
        await self._pulses.stop()
        if self._answering is not None:
            self._answering.clear()
        if self._tcp is not None:
            await self._tcp.close()
        if self._ptys is not None:
            self._ptys.close()
        await asyncio.sleep(0)  # let the aborted transports call connection_lost
