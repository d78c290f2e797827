"""Live power and energy from a meter's pulse output (module pin 3), sans-IO.

The meter gives ``constant`` pulses per kWh (1000 by default): one pulse is
``3.6e6 / constant`` joules. Fed each pulse's timestamp (integer nanoseconds of the source's own
monotonic clock), :class:`PowerEstimate` answers at any time:

- **power**: from the interval between the last two pulses,
  ``3.6e6 / (constant * seconds)`` W. When no pulse has come for longer than that interval,
  the load must have fallen: the power is then at most ``3.6e6 / (constant * time since the
  last pulse)``, and that bound is what is reported (it falls as the silence lasts). After
  ``zero_after`` seconds without a pulse the power is 0 (by default the silence after which one
  pulse would mean less than :data:`FLOOR_WATTS`).
- **glitches**: a pulse closer to the last accepted one than the meter's maximum power allows
  (``3.6e6 / (constant * max_power)`` seconds), or not after it, is no pulse: it is rejected
  and counted, and changes nothing else.
- **energy**: the meter's own register (``1.20``, whole kWh) is the reference; between two
  readouts the pulses since the last one add ``pulses / constant`` kWh to it. Each readout
  re-syncs it (:meth:`PowerEstimate.resync`): the register shows whole kWh rounded down, so
  the true energy lies in ``[register, register + 1)``; the estimate keeps its fraction of a
  kWh when it lies in that window and is moved to its nearest edge when not (so a sensor at
  sub-kWh resolution does not fall back to the whole kWh at every readout). Each resync also
  measures the **drift**: the pulses counted against the register's increase. A module that
  misses no pulse stays within 1 kWh (plus a pulse) of it; more is a module that misses
  pulses, or counts others.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from kamstrup382.errors import UsageError
from kamstrup382.protocol import KAMSTRUP_382

__all__ = [
    "DEFAULT_CONSTANT",
    "FLOOR_WATTS",
    "NS",
    "Power",
    "PowerEstimate",
    "Resync",
]

NS = 1_000_000_000
JOULES_PER_KWH = 3_600_000
DEFAULT_CONSTANT = 1000
#: The power below which silence reads as 0 W by default.
FLOOR_WATTS = 10.0
#: A Kamstrup 382's most power, by default: the dialect's, for 3 phases (79.7 kW).
DEFAULT_MAX_POWER_W = float(KAMSTRUP_382.max_power_kw(3) * 1000)


@dataclass(frozen=True, slots=True)
class Power:
    """The power at one time: ``watts`` (``None`` before two pulses gave an interval);
    ``bounded``: the silence since the last pulse limits it (the load fell); ``pulses``: the
    pulses accepted so far."""

    watts: float | None
    bounded: bool
    pulses: int


@dataclass(frozen=True, slots=True)
class Resync:
    """What a readout's register told: ``drift`` (kWh) is the pulses counted since the previous
    readout, in kWh, minus the register's increase; ``pulses`` those pulses."""

    register: Decimal
    increase: Decimal
    pulses: int
    drift: Decimal


class PowerEstimate:
    """The live power and energy of one meter from its pulses (see the module doc)."""

    def __init__(
        self,
        constant: int = DEFAULT_CONSTANT,
        *,
        max_power_w: float = DEFAULT_MAX_POWER_W,
        zero_after: float | None = None,
    ) -> None:
        if isinstance(constant, bool) or not isinstance(constant, int) or constant < 1:
            raise UsageError(f"pulse constant must be a whole number >= 1, got {constant!r}")
        if not max_power_w > 0:
            raise UsageError(f"max_power_w must be positive, got {max_power_w!r}")
        if zero_after is not None and not zero_after > 0:
            raise UsageError(f"zero_after must be positive, got {zero_after!r}")
        self.constant = constant
        self.joules_per_pulse = JOULES_PER_KWH / constant
        #: pulses closer than this (ns) are glitches
        self.min_interval_ns = int(self.joules_per_pulse / max_power_w * NS)
        floor = zero_after if zero_after is not None else self.joules_per_pulse / FLOOR_WATTS
        self.zero_after_ns = int(floor * NS)
        self.pulses = 0  # accepted since start
        self.rejected = 0
        self.missed = 0  # known to have passed unseen (counted in the energy)
        self._last: int | None = None
        self._interval: int | None = None  # ns per pulse, of the last accepted event
        self._register: Decimal | None = None
        self._base: Decimal | None = None  # the energy at the last resync
        self._since_resync = 0
        self.drift = Decimal(0)  # of the last resync

    # -- fed -----------------------------------------------------------------------------

    def pulse(self, at_ns: int, count: int = 1, *, missed: int = 0) -> bool:
        """``count`` pulses at ``at_ns`` (several: a source that reports them together, the last
        at ``at_ns``); ``missed``: pulses the source knows passed unseen before them (they count
        for the energy; no interval is measured across them). Returns False for a glitch
        (rejected and counted)."""
        if count < 1 or missed < 0:
            raise UsageError(f"pulse count must be >= 1 and missed >= 0, got {count!r}, {missed!r}")
        if missed:
            self.missed += missed
            self._since_resync += missed
            self.gap()
        last = self._last
        if last is not None:
            per_pulse = (at_ns - last) / count
            if per_pulse < self.min_interval_ns or at_ns <= last:
                self.rejected += count
                return False
            self._interval = int(per_pulse)
        self._last = at_ns
        self.pulses += count
        self._since_resync += count
        return True

    def gap(self) -> None:
        """The source lost track (a reconnect): the next pulse begins a new interval."""
        self._last = None
        self._interval = None

    def resync(self, register_kwh: Decimal, later: int = 0) -> Resync | None:
        """A readout's energy register: the reference from now on. ``later``: of the pulses
        counted, those that came after the register was read (they count from it on). The
        drift against the previous one (``None`` at the first)."""
        later = max(0, min(later, self._since_resync))
        previous = self._register
        counted = self._since_resync - later
        carried = None if self._base is None else self._base + Decimal(counted) / self.constant
        self._register = register_kwh
        self._since_resync = later
        top = register_kwh + 1 - Decimal(1) / self.constant  # the register rounds down
        if carried is None or carried < register_kwh:
            self._base = register_kwh
        else:
            self._base = min(carried, top)
        if previous is None:
            return None
        increase = register_kwh - previous
        self.drift = Decimal(counted) / self.constant - increase
        return Resync(register_kwh, increase, counted, self.drift)

    # -- asked ---------------------------------------------------------------------------

    def power(self, at_ns: int) -> Power:
        """The power at ``at_ns`` (any time: before the last pulse it is the last interval's)."""
        last, interval = self._last, self._interval
        if last is None:
            return Power(None, False, self.pulses)
        silence = at_ns - last
        if silence >= self.zero_after_ns:
            return Power(0.0, True, self.pulses)
        if interval is None:
            return Power(None, False, self.pulses)
        if silence > interval:
            return Power(self.joules_per_pulse * NS / silence, True, self.pulses)
        return Power(self.joules_per_pulse * NS / interval, False, self.pulses)

    def set_max_power(self, max_power_w: float) -> None:
        """The glitch limit from now on (a type number told the meter's maximum power)."""
        if not max_power_w > 0:
            raise UsageError(f"max_power_w must be positive, got {max_power_w!r}")
        self.min_interval_ns = int(self.joules_per_pulse / max_power_w * NS)

    def energy_kwh(self) -> Decimal | None:
        """The energy at the last readout (its register, with the fraction the pulses told)
        plus the pulses since it (``None`` before the first readout)."""
        if self._base is None:
            return None
        return self._base + Decimal(self._since_resync) / self.constant

    @property
    def since_resync(self) -> int:
        """Pulses accepted since the last readout."""
        return self._since_resync

    @property
    def last_pulse_ns(self) -> int | None:
        return self._last

    @property
    def interval_ns(self) -> int | None:
        """Nanoseconds a pulse of the last accepted event took (``None`` before two)."""
        return self._interval
