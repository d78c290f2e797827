"""The live power of the meters with pulse inputs, as Prometheus metrics.

Served on the Prometheus output's ``/metrics`` (registered in its registry), label ``meter``:

- ``kamstrup382_pulse_power_watts`` (gauge): the power from the pulses; while none comes, the
  bound the silence sets (falling), 0 after the meter's ``pulse_zero_after``. Absent before two
  pulses gave an interval. (``kamstrup382_power_watts`` is a KMP meter's power registers, with
  a ``phase`` label: :data:`~kamstrup382.outputs.descriptions.PROMETHEUS_KMP`.)
- ``kamstrup382_pulses_total`` (counter): pulses accepted (and those a source knows it missed:
  ``kamstrup382_pulses_missed_total``).
- ``kamstrup382_pulses_rejected_total`` (counter): glitches, pulses closer to the last than the
  meter's maximum power allows.
- ``kamstrup382_pulse_energy_kwh_total`` (counter): the last ``1.20`` register plus the pulses
  since, at the pulses' resolution (absent before the first readout).
- ``kamstrup382_pulse_drift_kwh`` (gauge): the pulses counted between the last two readouts, in
  kWh, minus the register's increase; beyond +-1 kWh (the register's rounding) the module
  misses pulses or counts others.
- ``kamstrup382_pulse_source_up`` (gauge): 1 while the meter's pulse source delivers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kamstrup382.outputs.base import Output
from kamstrup382.pulses.live import PowerUpdate
from kamstrup382.storage import AnyReading, FailureRecord

__all__ = ["PowerMetrics"]


class _Families(Collector):
    def __init__(self, owner: PowerMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        updates = self._owner.latest()
        power = GaugeMetricFamily(
            "kamstrup382_pulse_power_watts",
            "Power from the meter's pulse output (pin 3), W",
            labels=["meter"],
        )
        pulses = CounterMetricFamily(
            "kamstrup382_pulses", "Pulses accepted from the meter's pulse output", labels=["meter"]
        )
        missed = CounterMetricFamily(
            "kamstrup382_pulses_missed",
            "Pulses the source knows passed unseen (while disconnected)",
            labels=["meter"],
        )
        rejected = CounterMetricFamily(
            "kamstrup382_pulses_rejected",
            "Pulses rejected as glitches (closer than the meter's maximum power allows)",
            labels=["meter"],
        )
        energy = CounterMetricFamily(
            "kamstrup382_pulse_energy_kwh",
            "The last energy register plus the pulses since, in kWh",
            labels=["meter"],
        )
        drift = GaugeMetricFamily(
            "kamstrup382_pulse_drift_kwh",
            "Pulses counted between the last two readouts (kWh) minus the register's increase",
            labels=["meter"],
        )
        up = GaugeMetricFamily(
            "kamstrup382_pulse_source_up",
            "1 while the meter's pulse source delivers, else 0",
            labels=["meter"],
        )
        for update in updates:
            labels = [update.meter]
            if update.watts is not None:
                power.add_metric(labels, update.watts)
            pulses.add_metric(labels, float(update.pulses))
            missed.add_metric(labels, float(update.missed))
            rejected.add_metric(labels, float(update.rejected))
            if update.energy_kwh is not None:
                energy.add_metric(labels, float(update.energy_kwh))
            if update.drift_kwh is not None:
                drift.add_metric(labels, float(update.drift_kwh))
            up.add_metric(labels, 1.0 if update.connected else 0.0)
        yield from (power, pulses, missed, rejected, energy, drift, up)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class PowerMetrics(Output):
    """Keeps each meter's newest :class:`PowerUpdate` for ``registry``'s scrapes."""

    name = "power-metrics"
    uses_outbox = False

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, PowerUpdate] = {}
        registry.register(_Families(self))

    def power(self, update: PowerUpdate) -> None:
        with self._lock:
            self._latest[update.meter] = update

    def latest(self) -> list[PowerUpdate]:
        """The newest update of each meter, by meter name (any thread)."""
        with self._lock:
            return [self._latest[name] for name in sorted(self._latest)]

    async def publish(
        self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]
    ) -> None:
        """Readings reach the power through the collector's pulse inputs, not here."""
