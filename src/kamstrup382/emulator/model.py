"""The meter model: one Kamstrup 382 advancing with a clock. No I/O, no sleeps.

:class:`MeterModel` keeps the state of a meter and moves it forward to the clock's ``now`` each
time it is read (:meth:`MeterModel.advance`); time comes only from the clock it is given
(:class:`~kamstrup382.clock.SystemClock`, :class:`~kamstrup382.clock.ScaledClock` for the demo,
:class:`~kamstrup382.clock.ManualClock` for tests: a month in milliseconds).

What the registers do (codes as in the telegram):

- ``1.20`` energy: the load's energy, integrated exactly (``Fraction`` kWh inside) between the
  last advance and now. ``1.20.1`` / ``1.20.2``: the same energy goes to the active tariff's
  register as well. The telegram shows whole kWh (the integer part, as a register's wheels
  would) modulo ``10**7``: after 9999999 the register shows 0 again. Each register truncates
  its own fraction, so ``1.20`` is ``1.20.1 + 1.20.2`` or one more (given starting registers
  that add up, as the defaults do), until one of them wraps.
- Tariff input (module pin 4): shorted to pin 1 (``tariff_input = True``) selects tariff 2,
  open selects tariff 1. A :class:`~kamstrup382.emulator.tariff.TariffSchedule` can drive it;
  the integration is split at every switch instant, so energy lands exactly in the tariff
  active at the time it was used.
- ``1.26`` pulse input: with ``MeterSettings(pulse_input_mode=True)`` pin 4 counts pulses
  (:meth:`MeterModel.pulse_in`) instead of switching the tariff (everything is tariff 1).
- ``1.31`` hour counter: operating hours, i.e. all time the model has advanced through (the
  emulated meter is always powered), kept exact, shown as whole hours.
- ``1.6`` actual peak and ``1.6*1`` last month's peak: the highest average power over a
  demand period, per month (:mod:`.demand`).
- A 382C (``MeterSettings(model="382c")``) is the same meter in its own dialect: ``1.8.0``
  energy, ``1.8.1`` ... ``1.8.4`` tariffs 1-4, ``96.8.0`` hours, ``0.128.1`` pulse input, ``1.6.0``
  actual peak with three decimals and no last month's peak. Pin 4 selects tariff 1 or 2 as
  above; :meth:`MeterModel.select_tariff` puts the energy into tariff 3 or 4 (the meter's own
  time-of-use program does that on a real 382C).
- Pulse out (module pin 3): ``pulse_constant`` impulses per kWh. ``pulses_out`` is the number
  emitted since the model was created, always ``floor(consumed Wh * constant / 1000)`` exactly,
  where *consumed* is the energy integrated since creation (not the initial register).
  :meth:`MeterModel.subscribe_pulses` calls back with ``(count, at)``: the pulses emitted in one
  stretch of integration (stretches end at each advance, demand-period end and schedule
  switch) and the instant (to the microsecond) of the last of them, so the time between two
  callbacks' ``at`` and the count of the second give the exact average power in between.
  :meth:`MeterModel.next_pulse_at` says when the next pulse comes, for a program that wants
  to see pulses live (sleep until then, advance): the line's
  :meth:`~kamstrup382.emulator.server.Emulator.subscribe_pulses` does exactly that
  (:mod:`.pulses`).

The model is thread-safe: a lock guards the state (the line serves it from an event-loop
thread while tests read it). Pulse callbacks run after the lock is released, in the thread that
advanced the model. A clock that goes backwards (a wall clock being set) is ignored until it
passes the last instant seen again.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

from kamstrup382.clock import Clock, SystemClock
from kamstrup382.emulator.demand import DemandRegisters
from kamstrup382.emulator.load import (
    US_PER_HOUR,
    HouseholdLoad,
    Load,
    exact_energy_kwh,
    from_us,
    to_us,
)
from kamstrup382.emulator.settings import MeterSettings, check_load
from kamstrup382.emulator.tariff import TariffSchedule
from kamstrup382.errors import UsageError
from kamstrup382.protocol import (
    REGISTER_BY_NAME,
    BccAlgorithm,
    EndMarker,
    Identification,
    MeterValues,
    encode_reply,
)

__all__ = ["MeterModel", "PulseCallback", "Snapshot"]

PulseCallback = Callable[[int, datetime], None]
_T = TypeVar("_T")

#: What the telegram shows, before wrapping: whole kWh of the energy and of tariffs 1-4, whole
#: hours, the pulse input, the peaks (the customer number and identification are fixed by the
#: settings).
_Shown = tuple[int, int, int, int, int, int, int, Decimal, Decimal]


def _wrapped(value: Fraction | int, register: str) -> Decimal:
    """The whole part of a counter as its register shows it: modulo 10**digits."""
    return Decimal(math.floor(value) % REGISTER_BY_NAME[register].wraps_at)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The meter at one instant: its register values and the reply it sends for them."""

    at: datetime
    values: MeterValues
    telegram: bytes


class MeterModel:
    """One emulated Kamstrup 382; see the module docstring for what each register does.

    ``load`` defaults to a :class:`HouseholdLoad`, ``clock`` to the system clock;
    ``tariff_schedule`` (a :class:`TariffSchedule` or its text) drives the tariff input.
    """

    def __init__(
        self,
        settings: MeterSettings | None = None,
        load: Load | None = None,
        clock: Clock | None = None,
        tariff_schedule: TariffSchedule | str | None = None,
    ) -> None:
        self.settings = settings if settings is not None else MeterSettings()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._load: Load = load if load is not None else HouseholdLoad()
        check_load(self.settings, self._load)
        if isinstance(tariff_schedule, str):
            tariff_schedule = TariffSchedule.parse(tariff_schedule)
        if tariff_schedule is not None and self.settings.pulse_input_mode:
            raise UsageError(
                "a tariff schedule needs pin 4 for the tariff: not in pulse input mode"
            )
        self._schedule = tariff_schedule
        self._lock = threading.Lock()
        self._subscribers: list[PulseCallback] = []
        self._pending: list[tuple[int, datetime]] = []
        s = self.settings
        self._energy = Fraction(s.energy_kwh)
        self._tariffs = {
            1: Fraction(s.tariff_1_kwh),
            2: Fraction(s.tariff_2_kwh),
            3: Fraction(s.tariff_3_kwh),
            4: Fraction(s.tariff_4_kwh),
        }
        #: A 382C's tariff 3 or 4 selected (:meth:`select_tariff`), else None: pin 4 decides.
        self._selected: int | None = None
        self._hours = Fraction(s.hour_counter_h)
        self._pulse_input = s.pulse_input
        self._consumed = Fraction(0)
        self._pulses_out = 0
        self._input = s.tariff_input
        # what the registers showed last, their values and the replies encoded for them
        self._shown_last: _Shown | None = None
        self._values_last: MeterValues | None = None
        self._replies: dict[tuple[BccAlgorithm, EndMarker, bool], bytes] = {}
        now = to_us(self.clock.now())
        self._at = now
        self._demand = DemandRegisters(s, now, s.dialect.register("actual_peak"))
        self._switch = now  # the next tariff-schedule boundary (recomputed when reached)
        self._scheduled = 1
        if self._schedule is not None:
            self._follow_schedule(now)

    def __repr__(self) -> str:
        return (
            f"MeterModel({self.settings.customer_number} {self.settings.parsed_type_number}, "
            f"{self._load!r}, at {from_us(self._at).isoformat()})"
        )

    # -- integration -----------------------------------------------------------------------

    def _follow_schedule(self, us: int) -> None:
        assert self._schedule is not None
        at = from_us(us)
        self._scheduled = self._schedule.tariff_at(at)
        self._switch = to_us(self._schedule.next_boundary(at))

    def _tariff(self) -> int:
        if self._selected is not None:
            return self._selected
        if self.settings.pulse_input_mode:
            return 1
        if self._schedule is not None:
            return self._scheduled
        return 2 if self._input else 1

    def _first_reaching(
        self,
        start: int,
        before: Fraction,
        bracket: tuple[int, Fraction, int, Fraction],
        target: Fraction,
    ) -> int:
        """The first microsecond at which consumption reaches ``target``.

        Consumption at ``x`` is ``before`` plus the load's energy from ``start`` to ``x``;
        ``bracket`` is ``(lo, low, hi, high)``: two instants with their consumption, with
        ``low < target <= high``. Newton steps with the load's power (each guess checked with
        its neighbour, so that the exact microsecond is found in a few steps), and a bisection
        step whenever two guesses in a row did not halve the bracket.
        """
        begin = from_us(start)

        def reached(x: int) -> tuple[bool, Fraction]:
            level = before + exact_energy_kwh(self._load, begin, from_us(x))
            return level >= target, level

        lo, low, hi, high = bracket
        # the next guess, as an offset from lo: first the secant over the bracket
        offset = float((target - low) / (high - low)) * (hi - lo)
        anchor = lo
        stale = 0
        while hi - lo > 1:
            width = hi - lo
            x = min(max(anchor + math.ceil(offset), lo + 1), hi - 1)
            ok, level = reached(x)
            # the crossing is the first microsecond reached: look at the neighbour once
            neighbour = x - 1 if ok else x + 1
            if lo < neighbour < hi:
                n_ok, n_level = reached(neighbour)
                if n_ok != ok:
                    return x if ok else neighbour
                x, level = neighbour, n_level
            if ok:
                hi, high = x, level
            else:
                lo, low = x, level
            stale = stale + 1 if hi - lo > width // 2 else 0
            power = self._load.power_kw(from_us(x)) if stale < 2 else 0.0
            if power > 0 and math.isfinite(power):
                # Newton: the load's power at x says how far the target is
                anchor, offset = x, float(target - level) * US_PER_HOUR / power
            else:
                anchor, offset, stale = lo, (hi - lo) / 2, 0
        return hi

    def _advance_to(self, now: int) -> None:
        """Integrate up to ``now``; pulse events wait in ``_pending`` for :meth:`_notify`."""
        constant = self.settings.pulse_constant
        t = self._at
        while t < now:
            if self._schedule is not None and t >= self._switch:
                self._follow_schedule(t)
            end = min(now, self._demand.period_end)
            if self._schedule is not None:
                end = min(end, self._switch)
            # everything that asks the load comes first: if the load fails, the stretch from
            # t to end is not taken at all and the state stays consistent at t
            energy = exact_energy_kwh(self._load, from_us(t), from_us(end))
            consumed = self._consumed + energy
            pulses = math.floor(consumed * constant)
            if pulses > self._pulses_out and self._subscribers:
                bracket = (t, self._consumed, end, consumed)
                last = self._first_reaching(t, self._consumed, bracket, Fraction(pulses, constant))
                self._pending.append((pulses - self._pulses_out, from_us(last)))
            self._energy += energy
            self._tariffs[self._tariff()] += energy
            self._consumed = consumed
            self._pulses_out = pulses
            self._demand.add(energy)
            self._hours += Fraction(end - t, US_PER_HOUR)
            self._at = t = end
            self._demand.reached(t)
        self._at = max(self._at, now)
        if self._schedule is not None and self._at >= self._switch:
            self._follow_schedule(self._at)

    def _notify(self) -> None:
        """Hand the pulse events to the subscribers, outside the lock, in order."""
        with self._lock:
            if not self._pending:
                return
            events, self._pending = self._pending, []
            subscribers = list(self._subscribers)
        for count, at in events:
            for callback in subscribers:
                callback(count, at)

    def advance(self) -> datetime:
        """Bring the state up to the clock's now; returns the instant reached."""
        with self._lock:
            self._advance_to(to_us(self.clock.now()))
            at = from_us(self._at)
        self._notify()
        return at

    # -- registers -------------------------------------------------------------------------

    def _values(self) -> MeterValues:
        names = self.settings.dialect.names
        return MeterValues(
            customer_number=self.settings.customer_number,
            energy=_wrapped(self._energy, "energy"),
            tariff_1=_wrapped(self._tariffs[1], "tariff_1"),
            tariff_2=_wrapped(self._tariffs[2], "tariff_2"),
            tariff_3=_wrapped(self._tariffs[3], "tariff_3") if "tariff_3" in names else None,
            tariff_4=_wrapped(self._tariffs[4], "tariff_4") if "tariff_4" in names else None,
            hour_counter=_wrapped(self._hours, "hour_counter"),
            pulse_input=_wrapped(self._pulse_input, "pulse_input"),
            actual_peak=self._demand.peak,
            last_month_peak=self._demand.last_peak if "last_month_peak" in names else None,
        )

    @property
    def identification(self) -> Identification:
        return self.settings.identification

    def values(self) -> MeterValues:
        """The registers now (advances first)."""
        return self.snapshot().values

    def _shown(self) -> _Shown:
        return (
            math.floor(self._energy),
            math.floor(self._tariffs[1]),
            math.floor(self._tariffs[2]),
            math.floor(self._tariffs[3]),
            math.floor(self._tariffs[4]),
            math.floor(self._hours),
            self._pulse_input,
            self._demand.peak,
            self._demand.last_peak,
        )

    def snapshot(
        self,
        *,
        bcc: BccAlgorithm = BccAlgorithm.SUM7,
        end_marker: EndMarker = EndMarker.INLINE,
        eight_bit: bool = False,
    ) -> Snapshot:
        """The instant, the registers and the reply, taken together (advances first).

        While the registers shown stay the same (whole kWh, whole hours, the counts and
        peaks), the values and the encoded reply of the last snapshot are reused: the reply
        is always the encoder's for exactly the registers shown now.
        """
        form = (bcc, end_marker, eight_bit)
        with self._lock:
            self._advance_to(to_us(self.clock.now()))
            at = from_us(self._at)
            shown = self._shown()
            values = self._values_last
            if values is None or shown != self._shown_last:
                values = self._values()
                self._shown_last, self._values_last = shown, values
                self._replies = {}
            replies = self._replies
            reply = replies.get(form)
        self._notify()
        if reply is None:
            reply = encode_reply(
                self.identification, values, bcc=bcc, end_marker=end_marker, eight_bit=eight_bit
            )
            replies[form] = reply  # the dict of these values (a newer one replaces it)
        return Snapshot(at, values, reply)

    def telegram(
        self,
        bcc: BccAlgorithm = BccAlgorithm.SUM7,
        *,
        end_marker: EndMarker = EndMarker.INLINE,
        eight_bit: bool = False,
    ) -> bytes:
        """The reply to ``/?!`` CR LF now, from the protocol encoder (7-bit unless asked)."""
        return self.snapshot(bcc=bcc, end_marker=end_marker, eight_bit=eight_bit).telegram

    # -- exact state, for tests and modules --------------------------------------------------

    def _read(self, get: Callable[[], _T]) -> _T:
        with self._lock:
            self._advance_to(to_us(self.clock.now()))
            value = get()
        self._notify()
        return value

    @property
    def energy_kwh(self) -> Fraction:
        """Register 1.20 with its fraction, not wrapped (advances first)."""
        return self._read(lambda: self._energy)

    @property
    def tariffs(self) -> int:
        """How many tariff registers the meter has: 2 (685-382) or 4 (382C)."""
        return len(self.settings.dialect.parts)

    def tariff_kwh(self, tariff: int) -> Fraction:
        """Tariff register ``tariff`` (1.20.1, ...; 1.8.1 ... 1.8.4 on a 382C) with its fraction,
        not wrapped (advances first)."""
        if tariff not in range(1, self.tariffs + 1):
            raise UsageError(f"tariff must be 1 to {self.tariffs}, got {tariff!r}")
        return self._read(lambda: self._tariffs[tariff])

    def select_tariff(self, tariff: int | None) -> None:
        """A 382C's tariff 3 or 4 from now on (its own time-of-use program), or ``None``: back
        to tariff 1 or 2 as pin 4 (or the schedule) says."""
        if tariff is not None and tariff not in range(3, self.tariffs + 1):
            raise UsageError(
                f"a {self.settings.model} selects tariffs 3 to {self.tariffs} itself, "
                f"got {tariff!r}"
                if self.tariffs > 2
                else f"a {self.settings.model} has tariffs 1 and 2 only (pin 4), got {tariff!r}"
            )

        def put() -> None:
            self._selected = tariff

        self._read(put)

    @property
    def hours(self) -> Fraction:
        """Register 1.31 with its fraction, not wrapped (advances first)."""
        return self._read(lambda: self._hours)

    @property
    def consumed_kwh(self) -> Fraction:
        """Energy integrated since the model was created (advances first)."""
        return self._read(lambda: self._consumed)

    @property
    def pulses_out(self) -> int:
        """Pulses emitted on pin 3 since creation: floor(consumed Wh x constant / 1000)."""
        return self._read(lambda: self._pulses_out)

    def subscribe_pulses(self, callback: PulseCallback) -> Callable[[], None]:
        """Call ``callback(count, at)`` for the pulses emitted from now on; returns unsubscribe."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def next_pulse_at(self, within: timedelta = timedelta(days=1)) -> datetime | None:
        """When the next pulse on pin 3 comes if the load goes on as it is (advances first).

        The exact microsecond, or ``None`` when no pulse comes within ``within`` from now. A
        program that wants pulses live can sleep until then (``clock.sleep_until``) and
        :meth:`advance`: its subscribers then hear of the pulse with that very instant.
        """
        if within <= timedelta(0):
            raise UsageError(f"within must be positive, got {within}")
        with self._lock:
            self._advance_to(to_us(self.clock.now()))
            start, before = self._at, self._consumed
            target = Fraction(self._pulses_out + 1, self.settings.pulse_constant)
            limit = start + within // timedelta(microseconds=1)
            lo, low, step = start, before, 1_000_000
            found: int | None = None
            while found is None:
                hi = min(lo + step, limit)
                high = before + exact_energy_kwh(self._load, from_us(start), from_us(hi))
                if high >= target:
                    found = self._first_reaching(start, before, (lo, low, hi, high), target)
                elif hi >= limit:
                    break
                else:
                    lo, low, step = hi, high, step * 4
        self._notify()
        return None if found is None else from_us(found)

    # -- the module interface: pin 4 -------------------------------------------------------

    @property
    def tariff_input(self) -> bool:
        """Pin 4 shorted to pin 1 (True: tariff 2). With a schedule, what the schedule says."""

        def get() -> bool:
            if self._schedule is not None:
                return self._scheduled == 2
            return self._input

        return self._read(get)

    @tariff_input.setter
    def tariff_input(self, shorted: bool) -> None:
        if self.settings.pulse_input_mode:
            raise UsageError("pin 4 counts pulses in pulse input mode: no tariff input")
        if self._schedule is not None:
            raise UsageError("the tariff schedule drives the tariff input")

        def put() -> None:
            self._input = bool(shorted)

        self._read(put)

    @property
    def tariff_schedule(self) -> TariffSchedule | None:
        return self._schedule

    @tariff_schedule.setter
    def tariff_schedule(self, schedule: TariffSchedule | str | None) -> None:
        """Let a schedule drive the input from now on (``None``: back to :attr:`tariff_input`).

        Going back to manual control, the input keeps the state the schedule left it in.
        """
        if isinstance(schedule, str):
            schedule = TariffSchedule.parse(schedule)
        if schedule is not None and self.settings.pulse_input_mode:
            raise UsageError(
                "a tariff schedule needs pin 4 for the tariff: not in pulse input mode"
            )

        def put() -> None:
            if self._schedule is not None:
                self._input = self._scheduled == 2
            self._schedule = schedule
            if schedule is not None:
                self._follow_schedule(self._at)

        self._read(put)

    @property
    def tariff(self) -> int:
        """The active tariff, 1 or 2 (3 or 4 on a 382C that selected it; advances first)."""
        return self._read(self._tariff)

    def pulse_in(self, count: int = 1) -> None:
        """``count`` pulses arrive on pin 4 (pulse input mode only): register 1.26 counts them."""
        if not self.settings.pulse_input_mode:
            raise UsageError("pin 4 switches the tariff: set MeterSettings(pulse_input_mode=True)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(f"pulse count must be a non-negative int, got {count!r}")

        def put() -> None:
            self._pulse_input += count

        self._read(put)

    @property
    def load(self) -> Load:
        return self._load

    @load.setter
    def load(self, load: Load) -> None:
        """Swap the load from now on (the energy up to now is integrated with the old one)."""
        check_load(self.settings, load)

        def put() -> None:
            self._load = load

        self._read(put)
