"""The Prometheus output: scrape ``/metrics`` over HTTP and parse it with prometheus-client's
own parser; check names, types, labels and values against the readings given."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kamstrup382.errors import ConfigError
from kamstrup382.outputs.prometheus import BUCKETS, PrometheusOutput
from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage

from .helpers import failure, reading

ALLOWED_LABELS = {"meter", "tariff", "period", "kind", "le"}


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with open_storage(f"sqlite:///{tmp_path / 'readings.sqlite'}") as store:
        yield store


@pytest.fixture
async def output(storage: Storage) -> AsyncIterator[PrometheusOutput]:
    exporter = PrometheusOutput.from_config({"listen": "127.0.0.1:0"}, ["house", "garage"])
    await exporter.start(storage)
    try:
        yield exporter
    finally:
        await exporter.stop()


async def scrape(output: PrometheusOutput) -> dict[str, tuple[str, list[Sample]]]:
    """family name -> (type, samples), from a real HTTP scrape."""

    def get() -> tuple[str, str]:
        with urllib.request.urlopen(output.url, timeout=30) as response:
            return response.headers["Content-Type"], response.read().decode()

    content_type, text = await asyncio.to_thread(get)
    assert content_type.startswith("text/plain; version=0.0.4")
    return {f.name: (f.type, list(f.samples)) for f in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


async def test_registers_are_exported_with_their_types_and_labels(
    output: PrometheusOutput,
) -> None:
    house = reading("house", 4)
    garage = reading("garage", 2, energy=9_999_999)
    await output.publish([house, garage], [])
    families = await scrape(output)

    kind, samples = families["kamstrup382_energy_kwh"]
    assert kind == "counter"
    assert value(samples, "kamstrup382_energy_kwh_total", meter="house") == 53 + 3 * 4
    assert value(samples, "kamstrup382_energy_kwh_total", meter="garage") == 9_999_999

    kind, samples = families["kamstrup382_tariff_energy_kwh"]
    assert kind == "counter"
    assert value(samples, "kamstrup382_tariff_energy_kwh_total", meter="house", tariff="1") == 41
    assert value(samples, "kamstrup382_tariff_energy_kwh_total", meter="house", tariff="2") == 24

    kind, samples = families["kamstrup382_peak_power_kw"]
    assert kind == "gauge"
    peak = float(house.values.actual_peak)
    assert (
        value(samples, "kamstrup382_peak_power_kw", meter="house", period="current_month") == peak
    )
    assert value(samples, "kamstrup382_peak_power_kw", meter="house", period="last_month") == 17.0

    kind, samples = families["kamstrup382_hour_counter_hours"]
    assert kind == "gauge"
    assert value(samples, "kamstrup382_hour_counter_hours", meter="house") == 483

    kind, samples = families["kamstrup382_pulse_input_pulses"]
    assert kind == "counter"
    assert value(samples, "kamstrup382_pulse_input_pulses_total", meter="garage") == 14

    kind, samples = families["kamstrup382_last_success_timestamp_seconds"]
    assert kind == "gauge"
    stamp = value(samples, "kamstrup382_last_success_timestamp_seconds", meter="house")
    assert stamp == house.read_at.timestamp()

    for _, (_, family_samples) in families.items():
        for sample in family_samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample


async def test_the_newest_reading_wins(output: PrometheusOutput) -> None:
    await output.publish([reading("house", 7)], [])
    await output.publish([reading("house", 5)], [])  # an older one arriving late
    _, samples = (await scrape(output))["kamstrup382_energy_kwh"]
    assert value(samples, "kamstrup382_energy_kwh_total", meter="house") == 53 + 3 * 7


async def test_readout_durations_form_a_histogram(output: PrometheusOutput) -> None:
    records = [reading("house", i) for i in range(3)]  # 6.5, 6.51, 6.52 s
    await output.publish(records, [])
    kind, samples = (await scrape(output))["kamstrup382_readout_duration_seconds"]
    assert kind == "histogram"
    name = "kamstrup382_readout_duration_seconds"
    assert value(samples, f"{name}_count", meter="house") == 3
    assert value(samples, f"{name}_sum", meter="house") == pytest.approx(6.5 + 6.51 + 6.52)
    assert value(samples, f"{name}_bucket", meter="house", le="6.0") == 0
    assert value(samples, f"{name}_bucket", meter="house", le="7.0") == 3
    assert value(samples, f"{name}_bucket", meter="house", le="+Inf") == 3
    buckets = [
        s.labels["le"]
        for s in samples
        if s.name == f"{name}_bucket" and s.labels["meter"] == "house"
    ]
    assert buckets == [str(b) for b in BUCKETS] + ["+Inf"]
    # configured meters have their series from the start, at zero
    assert value(samples, f"{name}_count", meter="garage") == 0


async def test_failures_are_counted_by_kind(output: PrometheusOutput) -> None:
    await output.publish([], [failure("house", 0, "timeout"), failure("house", 1, "timeout")])
    await output.publish([], [failure("house", 2, "bcc"), failure("garage", 2, "connection")])
    kind, samples = (await scrape(output))["kamstrup382_readout_failures"]
    assert kind == "counter"
    name = "kamstrup382_readout_failures_total"
    assert value(samples, name, meter="house", kind="timeout") == 2
    assert value(samples, name, meter="house", kind="bcc") == 1
    assert value(samples, name, meter="garage", kind="connection") == 1


async def test_values_come_back_from_the_storage_after_a_restart(storage: Storage) -> None:
    record = reading("house", 9)
    await asyncio.to_thread(storage.record, [record])
    exporter = PrometheusOutput.from_config({"listen": "127.0.0.1:0"}, ["house"])
    await exporter.start(storage)
    try:
        families = await scrape(exporter)
    finally:
        await exporter.stop()
    _, samples = families["kamstrup382_energy_kwh"]
    assert value(samples, "kamstrup382_energy_kwh_total", meter="house") == 53 + 27
    _, samples = families["kamstrup382_last_success_timestamp_seconds"]
    assert value(samples, "kamstrup382_last_success_timestamp_seconds", meter="house") == (
        record.read_at.timestamp()
    )


async def test_stop_closes_the_port(storage: Storage) -> None:
    exporter = PrometheusOutput.from_config({"listen": "127.0.0.1:0"}, [])
    await exporter.start(storage)
    port = exporter.port
    await exporter.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_taken_port_is_a_config_error(storage: Storage) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = PrometheusOutput.from_config({"listen": f"127.0.0.1:{port}"}, [])
        with pytest.raises(ConfigError) as caught:
            await exporter.start(storage)
    assert caught.value.key == "prometheus.listen"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({}, "prometheus.listen"),
        ({"listen": "9382"}, "prometheus.listen"),
        ({"listen": "host:99999"}, "prometheus.listen"),
        ({"listen": 9382}, "prometheus.listen"),
        ({"listen": "127.0.0.1:9382", "port": 1}, "prometheus.port"),
    ],
)
def test_config_errors_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PrometheusOutput.from_config(section, [])
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9382", "127.0.0.1", 9382),
        ("[::1]:9100", "::1", 9100),
        (":9382", "0.0.0.0", 9382),
        ("localhost:0", "localhost", 0),
    ],
)
def test_listen_forms(listen: str, host: str, port: int) -> None:
    exporter = PrometheusOutput.from_config({"listen": listen}, [])
    assert (exporter.host, exporter.port) == (host, port)


async def test_a_382c_exports_tariffs_3_and_4_and_no_last_month_peak(
    output: PrometheusOutput,
) -> None:
    house = reading("house", 1)
    garage = replace(
        reading("garage", 1),
        values=replace(
            house.values,
            energy=Decimal(60),
            tariff_3=Decimal(4),
            tariff_4=Decimal(1),
            actual_peak=Decimal("1.078"),
            last_month_peak=None,
        ),
        identification="KAM 68438BC450000",
        type_number=None,
    )
    await output.publish([house, garage], [])
    families = await scrape(output)
    _, samples = families["kamstrup382_tariff_energy_kwh"]
    name = "kamstrup382_tariff_energy_kwh_total"
    assert value(samples, name, meter="garage", tariff="3") == 4
    assert value(samples, name, meter="garage", tariff="4") == 1
    # a 685-382 has no tariffs 3 and 4: no sample, not a 0
    assert [
        s for s in samples if s.labels.get("meter") == "house" and s.labels["tariff"] > "2"
    ] == []
    _, samples = families["kamstrup382_peak_power_kw"]
    peak = "kamstrup382_peak_power_kw"
    assert value(samples, peak, meter="garage", period="current_month") == 1.078
    assert [s for s in samples if s.labels == {"meter": "garage", "period": "last_month"}] == []
    assert value(samples, peak, meter="house", period="last_month") == 17.0
