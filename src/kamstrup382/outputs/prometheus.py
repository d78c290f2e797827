"""Prometheus output: an HTTP ``/metrics`` endpoint served by the collector.

Configuration::

    [prometheus]
    listen = "127.0.0.1:9382"    # host:port ("[::1]:9382" for IPv6, ":9382" for every address)

Metrics (labels: ``meter``, plus ``tariff``, ``period`` or ``kind`` where named; nothing else):

- the registers of each meter's newest reading, named in the register table
  (:data:`~kamstrup382.protocol.REGISTERS`): ``kamstrup382_energy_kwh_total`` (counter),
  ``kamstrup382_tariff_energy_kwh_total{tariff="1"|"2"}`` (counter),
  ``kamstrup382_hour_counter_hours`` (gauge), ``kamstrup382_pulse_input_pulses_total`` (counter),
  ``kamstrup382_peak_power_kw{period="current_month"|"last_month"}`` (gauge). A name ending in
  ``_total`` is a counter, any other a gauge. The registers wrap at 9,999,999; Prometheus
  treats the drop of a counter as a reset, so ``increase()`` stays right across the wrap.
- ``kamstrup382_readout_duration_seconds`` (histogram): time of each successful readout.
- ``kamstrup382_readout_failures_total{kind}`` (counter): failed readouts by error kind.
- ``kamstrup382_last_success_timestamp_seconds`` (gauge): Unix time of the newest reading.
- ``kamstrup382_output_state{output,state}`` (gauge, one series per state, 1 for the current
  one): the state of the collector's other outputs that have one; MQTT's states are
  ``starting``, ``connected``, ``unreachable``, ``login_refused``, ``stopped``.
- ``kamstrup382_output_<counter>_total{output}`` (counters of those outputs): for MQTT
  ``connect_attempts``, ``connections``, ``login_refusals`` and ``published``.

Energy stays in kWh (``_kwh_total``) rather than joules: see docs/publishing.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kamstrup382.errors import ConfigError, Kamstrup382Error
from kamstrup382.outputs import settings as check
from kamstrup382.outputs.base import Output
from kamstrup382.outputs.descriptions import PROMETHEUS
from kamstrup382.outputs.health import OutputHealth
from kamstrup382.protocol import REGISTERS, Register
from kamstrup382.storage import FailureRecord, ReadingRecord, Storage

__all__ = ["BUCKETS", "REGISTER_LABELS", "PrometheusOutput"]

#: A readout at 300 baud takes about 6.5 s (the reply is ~190 characters of 10 bits);
#: the buckets straddle that and allow for retries, and fast emulated lines below it.
BUCKETS = (0.5, 1.0, 2.5, 5.0, 6.0, 7.0, 8.0, 10.0, 20.0, 60.0)

#: The extra label that tells apart registers sharing one metric name.
REGISTER_LABELS: Mapping[str, tuple[str, str]] = {
    "tariff_1": ("tariff", "1"),
    "tariff_2": ("tariff", "2"),
    "tariff_3": ("tariff", "3"),
    "tariff_4": ("tariff", "4"),
    "actual_peak": ("period", "current_month"),
    "last_month_peak": ("period", "last_month"),
}

_KEYS = ("listen",)

log = logging.getLogger(__name__)


def _metric_registers() -> dict[str, list[Register]]:
    """Registers grouped by their Prometheus name, in table order."""
    groups: dict[str, list[Register]] = {}
    for register in REGISTERS:
        metric = PROMETHEUS.get(register.name)
        if metric is not None:
            groups.setdefault(metric.name, []).append(register)
    return groups


class _RegisterCollector(Collector):
    """Yields the newest register values of every meter at each scrape."""

    def __init__(self, latest: dict[str, ReadingRecord], lock: threading.Lock) -> None:
        self._latest = latest
        self._lock = lock
        self._groups = _metric_registers()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            records = sorted(self._latest.values(), key=lambda r: r.meter)
        for name, registers in self._groups.items():
            extra = [REGISTER_LABELS[r.name][0] for r in registers if r.name in REGISTER_LABELS]
            labels = ["meter", *dict.fromkeys(extra)]
            doc = PROMETHEUS[registers[0].name].help
            family: CounterMetricFamily | GaugeMetricFamily
            if name.endswith("_total"):
                family = CounterMetricFamily(name, doc, labels=labels)
            else:
                family = GaugeMetricFamily(name, doc, labels=labels)
            for record in records:
                values = record.values.as_dict()
                for register in registers:
                    if values[register.name] is None:  # a register this meter does not have
                        continue
                    label_values = [record.meter]
                    if register.name in REGISTER_LABELS:
                        label_values.append(REGISTER_LABELS[register.name][1])
                    family.add_metric(label_values, float(values[register.name]))
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


_COUNTER_HELP = {
    "connect_attempts": "Connections to its server the output tried",
    "connections": "Sessions with its server the output opened",
    "login_refusals": "Logins its server refused (bad user name or password, not authorized)",
    "published": "Messages the output had acknowledged",
}


class _HealthCollector(Collector):
    """Yields the state and counters of the watched outputs at each scrape."""

    def __init__(self, outputs: list[Output]) -> None:
        self._outputs = outputs

    def collect(self) -> Iterator[Metric]:
        healths: list[OutputHealth] = []
        for output in list(self._outputs):
            health = output.health()
            if health is not None:
                healths.append(health)
        state = GaugeMetricFamily(
            "kamstrup382_output_state",
            "State of an output of the collector: 1 for the current state, 0 for the others",
            labels=["output", "state"],
        )
        counters: dict[str, CounterMetricFamily] = {}
        for health in healths:
            for name in health.states:
                state.add_metric([health.output, name], 1.0 if name == health.state else 0.0)
            for name, value in health.counters.items():
                if name not in counters:
                    counters[name] = CounterMetricFamily(
                        f"kamstrup382_output_{name}",
                        _COUNTER_HELP.get(name, name.replace("_", " ")),
                        labels=["output"],
                    )
                counters[name].add_metric([health.output], float(value))
        yield state
        yield from counters.values()

    def describe(self) -> Iterator[Metric]:
        return iter(())


class PrometheusOutput(Output):
    """Serves ``/metrics`` on ``host:port`` from its own registry (not the global one)."""

    name = "prometheus"
    uses_outbox = False

    def __init__(self, host: str, port: int, meters: Sequence[str] = ()) -> None:
        self.host = host
        self.port = port
        self.meters = tuple(meters)
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._latest: dict[str, ReadingRecord] = {}
        self._duration = Histogram(
            "kamstrup382_readout_duration_seconds",
            "Duration of each successful readout, from request to last byte",
            ["meter"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._failures = Counter(
            "kamstrup382_readout_failures",
            "Readouts that failed after all attempts, by error kind",
            ["meter", "kind"],
            registry=self.registry,
        )
        self._last_success = Gauge(
            "kamstrup382_last_success_timestamp_seconds",
            "Unix time when the newest reading of the meter was taken",
            ["meter"],
            registry=self.registry,
        )
        self.registry.register(_RegisterCollector(self._latest, self._lock))
        self._watched: list[Output] = []
        self.registry.register(_HealthCollector(self._watched))
        for meter in self.meters:
            self._duration.labels(meter)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(
        cls, section: Mapping[str, Any], meters: Sequence[Any] = ()
    ) -> PrometheusOutput:
        data = check.table(section, "prometheus")
        check.check_keys(data, _KEYS, "prometheus")
        if "listen" not in data:
            raise ConfigError("prometheus.listen", "missing (e.g. 127.0.0.1:9382)")
        host, port = check.host_port(data["listen"], "prometheus.listen", default_host="0.0.0.0")
        names = [m if isinstance(m, str) else str(m.name) for m in meters]
        return cls(host, port, names)

    def watch(self, outputs: Sequence[Output]) -> None:
        """Export the state and counters (:meth:`Output.health`) of ``outputs`` too."""
        self._watched.extend(o for o in outputs if o is not self and o not in self._watched)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self, storage: Storage) -> None:
        """Load each meter's newest reading from the storage, then listen."""
        try:
            await asyncio.to_thread(self._load, storage)
        except Kamstrup382Error as exc:  # the metrics fill in with the next readings
            log.warning("prometheus: could not read the meters' last readings: %s", exc)
        await asyncio.to_thread(self._listen)

    def _load(self, storage: Storage) -> None:
        names = self.meters or tuple(storage.meters())
        for meter in names:
            record = storage.latest(meter)
            if record is not None:
                self._note(record)

    def _listen(self) -> None:
        try:
            server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                "prometheus.listen", f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])

    def _note(self, record: ReadingRecord) -> None:
        with self._lock:
            known = self._latest.get(record.meter)
            if known is None or record.read_at >= known.read_at:
                self._latest[record.meter] = record
                self._last_success.labels(record.meter).set(record.read_at.timestamp())

    async def publish(
        self, readings: Sequence[ReadingRecord], failures: Sequence[FailureRecord]
    ) -> None:
        for record in readings:
            self._note(record)
            self._duration.labels(record.meter).observe(record.duration)
        for failure in failures:
            self._failures.labels(failure.meter, failure.kind).inc()

    async def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join)
