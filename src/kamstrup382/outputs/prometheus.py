"""Prometheus output: an HTTP ``/metrics`` endpoint served by the collector.

Configuration::

    [prometheus]
    listen = "127.0.0.1:9382"       # host:port ("[::1]:9382" for IPv6, ":9382" for every address)
    per_meter_histograms = true     # default: true up to 50 meters, false above

Metrics (the list with their labels is docs/publishing.md):

- the registers of each meter's newest reading, named in
  :data:`~kamstrup382.outputs.descriptions.PROMETHEUS` (``kamstrup382_energy_kwh_total``,
  ``kamstrup382_operating_seconds_total``, ...). The registers wrap at 9,999,999; Prometheus
  treats the drop of a counter as a reset, so ``increase()`` stays right across the wrap.
- the collector's own families, declared in :data:`~kamstrup382.outputs.metrics.FAMILIES`:
  per meter ``kamstrup382_up``, the last attempt's and the last success's time, the meter's
  info, successes and failures by kind (every kind at 0 from the start), the readout
  histogram (optional: ``per_meter_histograms``); per collector the fleet-wide readout
  histogram, ``kamstrup382_build_info`` and the outbox backlog of each output that publishes
  from it (refreshed from the storage every :data:`BACKLOG_REFRESH` seconds).
- ``kamstrup382_output_state{output,state}`` and ``kamstrup382_output_<counter>_total{output}``:
  the state and counters of the collector's other outputs (:meth:`Output.health`).

No ``_created`` series: the process-wide switch of prometheus-client is turned off when the
output is built (they double the series and ``promtool`` and most dashboards ignore them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import metadata
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kamstrup382.errors import ConfigError, Kamstrup382Error
from kamstrup382.outputs import settings as check
from kamstrup382.outputs.base import Output
from kamstrup382.outputs.descriptions import PROMETHEUS, PROMETHEUS_KMP, PrometheusMetric
from kamstrup382.outputs.health import OutputHealth
from kamstrup382.outputs.metrics import BUCKETS, FAMILIES, MetricKind, failure_kinds
from kamstrup382.protocol import REGISTERS, parse_type_number
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.storage import AnyReading, FailureRecord, KmpReadingRecord, Storage

__all__ = [
    "BACKLOG_REFRESH",
    "BUCKETS",
    "PER_METER_HISTOGRAMS_UP_TO",
    "PrometheusOutput",
]

#: Up to this many meters, each has its own readout histogram unless configured otherwise
#: (17 series a meter: 14 buckets, +Inf, sum, count); above it only the fleet-wide one, unless
#: ``per_meter_histograms``.
PER_METER_HISTOGRAMS_UP_TO = 50
#: Seconds between two reads of the outbox backlog from the storage.
BACKLOG_REFRESH = 5.0

_KEYS = ("listen", "per_meter_histograms")

log = logging.getLogger(__name__)

_Metric = Counter | Gauge | Histogram


@dataclass(frozen=True, slots=True)
class _RegisterFamily:
    """One metric family of registers: its members are (protocol, register name, metric)
    (``iec``: mode A's :data:`PROMETHEUS`, ``kmp``: :data:`PROMETHEUS_KMP`)."""

    name: str
    help: str
    label: str | None
    members: tuple[tuple[str, str, PrometheusMetric], ...]


def _register_families() -> list[_RegisterFamily]:
    """Registers of both protocols grouped by their Prometheus name, in table order; the
    registers of one family must agree on its second label (checked here, once)."""
    groups: dict[str, list[tuple[str, str, PrometheusMetric]]] = {}
    for register in REGISTERS:
        metric = PROMETHEUS.get(register.name)
        if metric is not None:
            groups.setdefault(metric.name, []).append(("iec", register.name, metric))
    for kmp_register in KMP_382_REGISTERS:
        metric = PROMETHEUS_KMP.get(kmp_register.name)
        if metric is not None:
            groups.setdefault(metric.name, []).append(("kmp", kmp_register.name, metric))
    families: list[_RegisterFamily] = []
    for name, members in groups.items():
        labels = {None if m.label is None else m.label[0] for _, _, m in members}
        if len(labels) != 1:
            raise ValueError(
                f"{name}: its registers disagree on the label ({sorted(map(str, labels))})"
            )
        families.append(_RegisterFamily(name, members[0][2].help, labels.pop(), tuple(members)))
    return families


def _register_values(record: AnyReading) -> Mapping[str, Decimal | None]:
    """The numbers of ``record`` by register name (``None`` or absent: not sent)."""
    if isinstance(record, KmpReadingRecord):
        return record.values
    return {k: v for k, v in record.values.as_dict().items() if not isinstance(v, str)}


class _RegisterCollector(Collector):
    """Yields the newest register values of every meter at each scrape."""

    def __init__(self, latest: dict[str, AnyReading], lock: threading.Lock) -> None:
        self._latest = latest
        self._lock = lock
        self._families = _register_families()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            records = sorted(self._latest.values(), key=lambda r: r.meter)
        values = [(record, _register_values(record)) for record in records]
        for spec in self._families:
            labels = ["meter"] if spec.label is None else ["meter", spec.label]
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.name.endswith("_total"):
                family = CounterMetricFamily(spec.name, spec.help, labels=labels)
            else:
                family = GaugeMetricFamily(spec.name, spec.help, labels=labels)
            for record, numbers in values:
                for protocol, name, metric in spec.members:
                    value = numbers.get(name) if protocol == record.protocol else None
                    if value is None:  # a register this meter does not have, or did not send
                        continue
                    label_values = [record.meter]
                    if metric.label is not None:
                        label_values.append(metric.label[1])
                    family.add_metric(label_values, float(value * metric.scale))
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


def _build(key: str, registry: CollectorRegistry) -> _Metric:
    family = FAMILIES[key]
    labels = list(family.labels)
    if family.kind is MetricKind.COUNTER:
        return Counter(family.name, family.help, labels, registry=registry)
    if family.kind is MetricKind.HISTOGRAM:
        return Histogram(family.name, family.help, labels, buckets=BUCKETS, registry=registry)
    return Gauge(family.name, family.help, labels, registry=registry)


def _version() -> str:
    try:
        return metadata.version("kamstrup382")
    except metadata.PackageNotFoundError:
        return "unknown"


def _module(type_number: str | None) -> str:
    """The communication module (Y2Y1) of a type number; empty when it has none."""
    if type_number is None:
        return ""
    try:
        return parse_type_number(type_number).module
    except Kamstrup382Error:
        return ""


class PrometheusOutput(Output):
    """Serves ``/metrics`` on ``host:port`` from its own registry (not the global one).

    ``meters``: the configured meters (names, or objects with ``name`` and ``interval``), whose
    series exist from the start. ``per_meter_histograms``: ``None`` decides by the number of
    meters (:data:`PER_METER_HISTOGRAMS_UP_TO`).
    """

    name = "prometheus"
    uses_outbox = False

    def __init__(
        self,
        host: str,
        port: int,
        meters: Sequence[Any] = (),
        *,
        per_meter_histograms: bool | None = None,
        backlog_refresh: float = BACKLOG_REFRESH,
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.host = host
        self.port = port
        self.meters = tuple(m if isinstance(m, str) else str(m.name) for m in meters)
        if per_meter_histograms is None:
            per_meter_histograms = len(self.meters) <= PER_METER_HISTOGRAMS_UP_TO
        self.per_meter_histograms = per_meter_histograms
        self.backlog_refresh = backlog_refresh
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._latest: dict[str, AnyReading] = {}
        self._attempt_at: dict[str, datetime] = {}
        self._info: dict[str, tuple[str, ...]] = {}
        self._known: set[str] = set()
        self._kinds = failure_kinds()
        keys = [k for k in FAMILIES if k != "duration" or per_meter_histograms]
        self._metrics: dict[str, _Metric] = {k: _build(k, self.registry) for k in keys}
        self._gauge("build_info").labels(_version(), platform.python_version()).set(1)
        self.registry.register(_RegisterCollector(self._latest, self._lock))
        self._watched: list[Output] = []
        self.registry.register(_HealthCollector(self._watched))
        for meter in meters:
            interval = getattr(meter, "interval", None)
            if interval is not None:
                self._gauge("interval").labels(str(meter.name)).set(interval.total_seconds())
        for name in self.meters:
            self._add_meter(name)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._backlog: asyncio.Task[None] | None = None
        self._backlog_failing = False

    @classmethod
    def from_config(
        cls, section: Mapping[str, Any], meters: Sequence[Any] = ()
    ) -> PrometheusOutput:
        data = check.table(section, "prometheus")
        check.check_keys(data, _KEYS, "prometheus")
        if "listen" not in data:
            raise ConfigError("prometheus.listen", "missing (e.g. 127.0.0.1:9382)")
        host, port = check.host_port(data["listen"], "prometheus.listen", default_host="0.0.0.0")
        per_meter: bool | None = None
        if "per_meter_histograms" in data:
            per_meter = check.boolean(
                data["per_meter_histograms"], "prometheus.per_meter_histograms"
            )
        return cls(host, port, meters, per_meter_histograms=per_meter)

    # -- the metrics, by their key in FAMILIES -----------------------------------------------
    def _gauge(self, key: str) -> Gauge:
        metric = self._metrics[key]
        assert isinstance(metric, Gauge)
        return metric

    def _counter(self, key: str) -> Counter:
        metric = self._metrics[key]
        assert isinstance(metric, Counter)
        return metric

    def _histogram(self, key: str) -> Histogram | None:
        metric = self._metrics.get(key)
        assert metric is None or isinstance(metric, Histogram)
        return metric

    def _add_meter(self, meter: str) -> None:
        """The meter's series, at 0 (caller holds the lock or is the constructor)."""
        if meter in self._known:
            return
        self._known.add(meter)
        self._gauge("up").labels(meter)
        self._counter("successes").labels(meter)
        for kind in self._kinds:
            self._counter("failures").labels(meter, kind)
        duration = self._histogram("duration")
        if duration is not None:
            duration.labels(meter)

    def meters_changed(self, meters: Sequence[Any]) -> None:
        """A reloaded configuration (names or configured meters): series of the meters added
        start at 0; those of the meters removed go (a removed meter is not reported as stale
        for ever)."""
        self.meters = tuple(m if isinstance(m, str) else str(m.name) for m in meters)
        wanted = set(self.meters)
        for meter in meters:
            interval = getattr(meter, "interval", None)
            if interval is not None:
                self._gauge("interval").labels(str(meter.name)).set(interval.total_seconds())
        with self._lock:
            removed = [m for m in self._known if m not in wanted]
            for meter in self.meters:
                self._add_meter(meter)
            for meter in removed:
                self._known.discard(meter)
                self._latest.pop(meter, None)
                self._attempt_at.pop(meter, None)
                info = self._info.pop(meter, None)
                if info is not None:
                    self._gauge("meter_info").remove(*info)
                for key, metric in self._metrics.items():
                    labels = FAMILIES[key].labels
                    if labels == ("meter",):
                        with contextlib.suppress(KeyError):
                            metric.remove(meter)
                    elif labels == ("meter", "kind"):
                        for kind in self._kinds:
                            with contextlib.suppress(KeyError):
                                metric.remove(meter, kind)

    def watch(self, outputs: Sequence[Output]) -> None:
        """Export the state and counters (:meth:`Output.health`) of ``outputs`` too, and the
        outbox backlog of those that publish from it."""
        self._watched.extend(o for o in outputs if o is not self and o not in self._watched)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self, storage: Storage) -> None:
        """Load each meter's newest reading and status from the storage, then listen."""
        try:
            await asyncio.to_thread(self._load, storage)
        except Kamstrup382Error as exc:  # the metrics fill in with the next readings
            log.warning("prometheus: could not read the meters' last readings: %s", exc)
        await asyncio.to_thread(self._listen)
        if any(o.uses_outbox for o in self._watched):
            await self._refresh_backlog(storage)  # there from the first scrape
            self._backlog = asyncio.create_task(self._watch_backlog(storage))

    def _load(self, storage: Storage) -> None:
        names = self.meters or tuple(storage.meters())
        for record in storage.latest_readings(names).values():
            self._note(record)
        for status in storage.status():
            if status.meter not in names or status.last_error is None:
                continue
            with self._lock:
                self._add_meter(status.meter)
                if status.last_success is None or status.last_error > status.last_success:
                    self._gauge("up").labels(status.meter).set(0)
                    self._attempted(status.meter, status.last_error)

    def _listen(self) -> None:
        try:
            server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                "prometheus.listen", f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])

    async def _refresh_backlog(self, storage: Storage) -> None:
        """Read the outbox backlog of each output that has one; log the first failure of a run
        of them (the gauges keep their last values meanwhile)."""
        try:
            for output in [o for o in self._watched if o.uses_outbox]:
                pending, oldest = await asyncio.to_thread(storage.outbox_backlog, output.name)
                age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
                self._gauge("outbox_pending").labels(output.name).set(pending)
                self._gauge("outbox_age").labels(output.name).set(max(0.0, age))
        except Kamstrup382Error as exc:
            if not self._backlog_failing:
                log.warning("prometheus: could not read the outbox backlog: %s", exc)
            self._backlog_failing = True
        else:
            self._backlog_failing = False

    async def _watch_backlog(self, storage: Storage) -> None:
        """Refresh the backlog every ``backlog_refresh`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.backlog_refresh)
            await self._refresh_backlog(storage)

    async def stop(self) -> None:
        task, self._backlog = self._backlog, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join)

    # -- results -------------------------------------------------------------------------------
    def _attempted(self, meter: str, at: datetime) -> bool:
        """Note an attempt of ``meter`` begun at ``at``; whether it is the newest one."""
        known = self._attempt_at.get(meter)
        if known is not None and at < known:
            return False
        self._attempt_at[meter] = at
        self._gauge("last_attempt").labels(meter).set(at.timestamp())
        return True

    def _note(self, record: AnyReading) -> None:
        meter = record.meter
        with self._lock:
            self._add_meter(meter)
            known = self._latest.get(meter)
            if known is None or record.read_at >= known.read_at:
                self._latest[meter] = record
                self._gauge("last_success").labels(meter).set(record.read_at.timestamp())
                self._set_info(record)
            if self._attempted(meter, record.read_at):
                self._gauge("up").labels(meter).set(1)

    def _set_info(self, record: AnyReading) -> None:
        if isinstance(record, KmpReadingRecord):  # what GetType and GetSerialNo said
            labels: tuple[str, ...] = (
                record.meter,
                record.protocol,
                "",
                "",
                "",
                "",
                f"0x{record.meter_type:04x}",
                record.software_revision,
                str(record.serial),
            )
        else:
            labels = (
                record.meter,
                record.protocol,
                record.type_number or "",
                record.values.customer_number,
                _module(record.type_number),
                record.bcc_algorithm,
                "",
                "",
                "",
            )
        info = self._gauge("meter_info")
        old = self._info.get(record.meter)
        if old == labels:
            return
        if old is not None:
            info.remove(*old)
        info.labels(*labels).set(1)
        self._info[record.meter] = labels

    def _note_failure(self, failure: FailureRecord) -> None:
        meter = failure.meter
        with self._lock:
            self._add_meter(meter)
            self._counter("failures").labels(meter, failure.kind).inc()
            if failure.attempts == 0:  # missed: not read in its slot, but no attempt made
                known = self._attempt_at.get(meter)
                newest = known is None or failure.failed_at >= known
            else:
                newest = self._attempted(
                    meter, failure.failed_at - timedelta(seconds=failure.duration)
                )
            if newest:
                self._gauge("up").labels(meter).set(0)

    async def publish(
        self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]
    ) -> None:
        duration = self._histogram("duration")
        fleet = self._histogram("fleet_duration")
        assert fleet is not None
        for record in readings:  # mode A and KMP alike
            self._note(record)
            self._counter("successes").labels(record.meter).inc()
            fleet.labels(record.protocol).observe(record.duration)
            if duration is not None:
                duration.labels(record.meter).observe(record.duration)
        for failure in failures:
            self._note_failure(failure)
