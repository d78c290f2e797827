"""One meter's live power as the collector keeps it, sans-IO: what the outputs are told, when.

:class:`LiveMeter` wraps a :class:`~.estimate.PowerEstimate` with what a running module needs
around it, all with the times passed in:

- **two clocks**: a source stamps its pulses on its own clock (the meter's wall clock for the
  emulator, the kernel's monotonic clock for a GPIO line); the silence since the last pulse is
  measured on the caller's monotonic clock from the moment the event arrived, so the decay
  goes on between pulses whatever the source's clock.
- **when to report** (:meth:`LiveMeter.due`): every ``power_interval`` seconds, and at
  once on a large change (the power moved by ``power_change`` of the last reported figure, or
  to or from 0 or unknown). Outputs that publish (MQTT) follow it; a gauge (Prometheus) takes
  every update.
- **the precise energy** never falls: after a readout whose register says the pulses counted
  too many, the figure reported stays where it was until the pulses pass it (a Home Assistant
  ``total_increasing`` sensor reads any fall as a meter reset).
- **the drift** of each readout, and whether it is beyond what rounding explains
  (:data:`DRIFT_LIMIT_KWH` plus one pulse).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from kamstrup382.errors import UsageError
from kamstrup382.pulses.estimate import DEFAULT_CONSTANT, NS, Power, PowerEstimate, Resync

__all__ = [
    "DRIFT_LIMIT_KWH",
    "LiveMeter",
    "MinuteFigures",
    "PowerUpdate",
    "PulseSettings",
]

#: The register rounds down to whole kWh: a drift up to this (plus a pulse) is rounding.
DRIFT_LIMIT_KWH = Decimal(1)
#: Pulses kept (their wall-clock instants) to tell those that came after a register was read.
RECENT = 4096
MINUTE_NS = 60 * NS
#: Silent minutes given as 0 W at most, after a gap in the updates (a suspended machine).
MAX_SILENT_MINUTES = 1440


@dataclass(frozen=True, slots=True)
class MinuteFigures:
    """One whole minute of pulses: ``start_ns`` (wall clock, whole minute), ``pulses``
    accepted in it, ``mean_w`` from that count, ``min_w``/``max_w`` of the interval estimates
    at its pulses (``None``: no pulse gave an interval in it)."""

    start_ns: int
    pulses: int
    mean_w: float
    min_w: float | None
    max_w: float | None


@dataclass(frozen=True, slots=True)
class PulseSettings:
    """A meter's pulse input: ``source`` (``tcp://HOST:PORT`` or ``gpio:CHIP:LINE``), its
    ``constant`` (imp/kWh), the glitch limit ``max_power_w`` (``None``: from the meter's type
    number once read, the 382's most until then), ``zero_after`` seconds of silence that read
    as 0 W (``None``: when one pulse would mean under 10 W), and when the power is reported:
    at most every ``power_interval`` seconds, at once on a relative change of ``power_change``.
    """

    source: str
    constant: int = DEFAULT_CONSTANT
    max_power_w: float | None = None
    zero_after: float | None = None
    power_interval: float = 5.0
    power_change: float = 0.2

    def __post_init__(self) -> None:
        if self.power_interval < 0 or not self.power_change > 0:
            raise UsageError("power_interval must be >= 0 and power_change > 0")


@dataclass(frozen=True, slots=True)
class PowerUpdate:
    """What one meter's pulses say now. ``watts``: ``None`` before two pulses; ``bounded``: no
    pulse for longer than the last interval (the figure is the bound); ``energy_kwh``: the
    last register plus the pulses since (``None`` before a readout), never falling;
    ``pulse_at``: the last pulse's instant on the wall clock (``None`` before one);
    ``connected``: the source is delivering; ``report``: the outputs that publish should."""

    meter: str
    at: datetime
    watts: float | None
    bounded: bool
    energy_kwh: Decimal | None
    pulses: int
    rejected: int
    missed: int
    drift_kwh: Decimal | None
    pulse_at: datetime | None
    connected: bool
    report: bool


class LiveMeter:
    """The live power of one meter (see the module doc)."""

    def __init__(self, meter: str, settings: PulseSettings) -> None:
        self.meter = meter
        self.settings = settings
        kwargs = {} if settings.max_power_w is None else {"max_power_w": settings.max_power_w}
        self.estimate = PowerEstimate(settings.constant, zero_after=settings.zero_after, **kwargs)
        self.connected = False
        self._arrived_mono: int | None = None  # our monotonic ns when the last pulse arrived
        self._pulse_wall: int | None = None  # the last pulse on the wall clock (ns)
        self._energy: Decimal | None = None  # the highest reported
        self._reported_at: int | None = None  # monotonic ns
        self._reported_watts: float | None = None
        self.drift: Decimal | None = None
        self._recent: deque[tuple[int, int]] = deque(maxlen=RECENT)  # (wall ns, count)
        self._minute: int | None = None  # the minute being counted (its index)
        self._pending_minutes: list[MinuteFigures] = []
        self._partial: int | None = None
        self._minute_pulses = 0
        self._minute_low: float | None = None
        self._minute_high: float | None = None

    # -- fed -----------------------------------------------------------------------------
    def pulse(
        self,
        at_ns: int,
        count: int,
        *,
        missed: int = 0,
        gap: bool = False,
        mono_ns: int,
        wall_ns: int,
    ) -> bool:
        """A pulse event stamped ``at_ns`` on the source's clock, arrived at ``mono_ns`` (our
        monotonic clock); ``wall_ns``: its instant on the wall clock. False: a glitch."""
        if gap:
            self.estimate.gap()
        accepted = self.estimate.pulse(at_ns, count, missed=missed)
        if accepted:
            self._arrived_mono = mono_ns
            self._pulse_wall = wall_ns
            self._recent.append((wall_ns, count + missed))
            self._count_minute(wall_ns, count)
        elif missed:
            self._recent.append((wall_ns, missed))
        return accepted

    def _count_minute(self, wall_ns: int, count: int) -> None:
        index = wall_ns // MINUTE_NS
        if self._minute is None or index > self._minute:
            if self._minute is not None:
                self._pending_minutes.extend(self._close_minutes(index))
            else:
                self._partial = index  # counting began inside it: not a whole minute
            self._minute = index
        self._minute_pulses += count
        interval = self.estimate.interval_ns
        if interval is not None:
            watts = self.estimate.joules_per_pulse * NS / interval
            low, high = self._minute_low, self._minute_high
            self._minute_low = watts if low is None else min(low, watts)
            self._minute_high = watts if high is None else max(high, watts)

    def _close_minutes(self, until_index: int) -> list[MinuteFigures]:
        """The minute being counted, and the silent ones after it, before ``until_index``."""
        assert self._minute is not None
        per_pulse_wmin = self.estimate.joules_per_pulse / 60
        done = (
            []
            if self._minute == self._partial
            else [
                MinuteFigures(
                    self._minute * MINUTE_NS,
                    self._minute_pulses,
                    self._minute_pulses * per_pulse_wmin,
                    self._minute_low,
                    self._minute_high,
                )
            ]
        )
        first_silent = max(self._minute + 1, until_index - MAX_SILENT_MINUTES)
        done += [
            MinuteFigures(i * MINUTE_NS, 0, 0.0, None, None)
            for i in range(first_silent, until_index)
        ]
        self._minute_pulses = 0
        self._minute_low = self._minute_high = None
        return done

    def minutes(self, wall_ns: int) -> list[MinuteFigures]:
        """The whole minutes before ``wall_ns`` not given yet (silent ones as 0 W), taken."""
        index = wall_ns // MINUTE_NS
        if self._minute is not None and index > self._minute:
            self._pending_minutes.extend(self._close_minutes(index))
            self._minute = index
        done, self._pending_minutes = self._pending_minutes, []
        return done

    def readout(
        self, register_kwh: Decimal, read_ns: int, max_power_w: float | None = None
    ) -> Resync | None:
        """A readout's ``1.20``, read at ``read_ns`` (wall clock): the energy re-synced, the
        drift measured (pulses after ``read_ns`` count from the register on). ``max_power_w``:
        the meter's most by its type number (the glitch limit unless the settings give one)."""
        if max_power_w is not None and self.settings.max_power_w is None:
            self.estimate.set_max_power(max_power_w)
        later = sum(count for at, count in self._recent if at > read_ns)
        resync = self.estimate.resync(register_kwh, later)
        if resync is not None:
            self.drift = resync.drift
        return resync

    def drift_beyond_rounding(self, resync: Resync) -> bool:
        """Whether a readout's drift is more than the register's rounding explains."""
        return abs(resync.drift) > DRIFT_LIMIT_KWH + Decimal(1) / self.settings.constant

    # -- asked ---------------------------------------------------------------------------
    def power(self, mono_ns: int) -> Power:
        """The power at ``mono_ns`` (our monotonic clock); asking changes nothing."""
        estimate = self.estimate
        last = estimate.last_pulse_ns
        if last is not None and self._arrived_mono is not None:
            return estimate.power(last + max(0, mono_ns - self._arrived_mono))
        return estimate.power(0)

    def update(self, mono_ns: int, wall: datetime | None = None) -> PowerUpdate:
        """The power at ``mono_ns`` (our monotonic clock) and whether it is due to be reported:
        an update marked ``report`` counts as reported (the next is due from it on)."""
        estimate = self.estimate
        power = self.power(mono_ns)
        energy = estimate.energy_kwh()
        if energy is not None and (self._energy is None or energy > self._energy):
            self._energy = energy
        report = self.due(power.watts, mono_ns)
        if report:
            self._reported_at = mono_ns
            self._reported_watts = power.watts
        pulse_at = None
        if self._pulse_wall is not None:
            pulse_at = datetime.fromtimestamp(self._pulse_wall / NS, UTC)
        return PowerUpdate(
            meter=self.meter,
            at=wall if wall is not None else datetime.now(UTC),
            watts=power.watts,
            bounded=power.bounded,
            energy_kwh=self._energy,
            pulses=estimate.pulses,
            rejected=estimate.rejected,
            missed=estimate.missed,
            drift_kwh=self.drift,
            pulse_at=pulse_at,
            connected=self.connected,
            report=report,
        )

    def due(self, watts: float | None, mono_ns: int) -> bool:
        """Whether ``watts`` at ``mono_ns`` is to be reported (see the module doc)."""
        if self._reported_at is None:
            return watts is not None or self._energy is not None
        last = self._reported_watts
        if (watts is None) != (last is None) or (watts == 0) != (last == 0):
            return True
        if (
            watts is not None
            and last is not None
            and last > 0
            and abs(watts - last) >= self.settings.power_change * last
        ):
            return True
        return mono_ns - self._reported_at >= self.settings.power_interval * NS
