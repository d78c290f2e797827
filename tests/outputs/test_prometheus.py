"""The Prometheus output: scrape ``/metrics`` over HTTP and parse it with prometheus-client's
own parser; check names, types, labels and values against the readings given."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kamstrup382.collector.config import parse_config
from kamstrup382.errors import ConfigError
from kamstrup382.outputs.metrics import BUCKETS, failure_kinds
from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.outputs.prometheus import PER_METER_HISTOGRAMS_UP_TO, PrometheusOutput
from kamstrup382.storage import MISSED, Storage

from .helpers import failure, reading
from .scrape import Families, promtool_check_metrics, scrape, scrape_text, value

ALLOWED_LABELS = {
    "meter",
    "tariff",
    "period",
    "kind",
    "le",
    "phase",
    "protocol",
}  # protocol: iec, kmp
#: the labels of the info metrics
INFO_LABELS = {
    "kamstrup382_meter_info": {
        "meter", "protocol", "type_number", "customer_number", "module", "bcc_algorithm",
        "meter_type", "software", "serial",
    },
    "kamstrup382_build_info": {"version", "python"},
}  # fmt: skip


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

    kind, samples = families["kamstrup382_operating_seconds"]
    assert kind == "counter"  # the hour counter in Prometheus' base unit
    assert value(samples, "kamstrup382_operating_seconds_total", meter="house") == 483 * 3600

    kind, samples = families["kamstrup382_pulse_input_pulses"]
    assert kind == "counter"
    assert value(samples, "kamstrup382_pulse_input_pulses_total", meter="garage") == 14

    kind, samples = families["kamstrup382_last_success_timestamp_seconds"]
    assert kind == "gauge"
    stamp = value(samples, "kamstrup382_last_success_timestamp_seconds", meter="house")
    assert stamp == house.read_at.timestamp()

    for name, (_, family_samples) in families.items():
        for sample in family_samples:
            assert set(sample.labels) <= INFO_LABELS.get(name, ALLOWED_LABELS), sample


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
        (
            {"listen": "127.0.0.1:9382", "per_meter_histograms": "maybe"},
            "prometheus.per_meter_histograms",
        ),
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


async def test_every_failure_kind_starts_at_zero_for_every_meter(output: PrometheusOutput) -> None:
    kinds = failure_kinds()
    assert {"timeout", "connection", "bcc", "parity", "implausible", "missed"} <= set(kinds)
    _, samples = (await scrape(output))["kamstrup382_readout_failures"]
    name = "kamstrup382_readout_failures_total"
    for meter in ("house", "garage"):
        assert [value(samples, name, meter=meter, kind=kind) for kind in kinds] == [0] * len(kinds)
    # a meter first heard of in a failure gets every kind too
    await output.publish([], [failure("shed", 0, "bcc")])
    _, samples = (await scrape(output))["kamstrup382_readout_failures"]
    assert value(samples, name, meter="shed", kind="bcc") == 1
    assert value(samples, name, meter="shed", kind="timeout") == 0


async def test_up_and_the_last_attempt_follow_the_newest_outcome(output: PrometheusOutput) -> None:
    def up(families: Families, meter: str) -> float:
        return value(families["kamstrup382_up"][1], "kamstrup382_up", meter=meter)

    def attempt(families: Families, meter: str) -> float:
        _, samples = families["kamstrup382_last_attempt_timestamp_seconds"]
        return value(samples, "kamstrup382_last_attempt_timestamp_seconds", meter=meter)

    families = await scrape(output)
    assert families["kamstrup382_up"][0] == "gauge"
    assert up(families, "house") == 0  # nothing read yet
    await output.publish([reading("house", 4)], [])
    families = await scrape(output)
    assert up(families, "house") == 1
    assert attempt(families, "house") == reading("house", 4).read_at.timestamp()
    late = failure("house", 2)  # older than the reading: arrives late, changes nothing
    await output.publish([], [late])
    assert up(await scrape(output), "house") == 1
    newer = failure("house", 5)
    await output.publish([], [newer])
    families = await scrape(output)
    assert up(families, "house") == 0
    assert attempt(families, "house") == pytest.approx(newer.failed_at.timestamp() - newer.duration)
    _, samples = families["kamstrup382_readout_successes"]
    assert value(samples, "kamstrup382_readout_successes_total", meter="house") == 1
    # a missed slot is no attempt, but the meter is not up
    await output.publish([reading("house", 6)], [])
    missed = dataclasses.replace(failure("house", 7, MISSED), attempts=0, duration=0.0)
    await output.publish([], [missed])
    families = await scrape(output)
    assert up(families, "house") == 0
    assert attempt(families, "house") == reading("house", 6).read_at.timestamp()


async def test_the_meter_info_follows_the_newest_reading(output: PrometheusOutput) -> None:
    await output.publish([reading("house", 1)], [])
    await output.publish([reading("house", 2, type_number="685-382-SK-15")], [])
    kind, samples = (await scrape(output))["kamstrup382_meter_info"]
    assert kind == "gauge"
    (sample,) = [s for s in samples if s.labels["meter"] == "house"]
    assert sample.value == 1
    assert sample.labels == {
        "meter": "house",
        "protocol": "iec",
        "type_number": "685-382-SK-15",
        "customer_number": "00054042",
        "module": "SK",
        "bcc_algorithm": "sum7",
        "meter_type": "",
        "software": "",
        "serial": "",
    }
    kind, samples = (await scrape(output))["kamstrup382_build_info"]
    (sample,) = samples
    assert sample.value == 1 and sample.labels["version"] and sample.labels["python"]


async def test_no_created_series_and_promtool_accepts_the_exposition(
    output: PrometheusOutput,
) -> None:
    await output.publish([reading("house", 1)], [failure("garage", 1)])
    text = await scrape_text(output)
    assert "_created" not in text
    assert await promtool_check_metrics(text) == ""


@pytest.mark.parametrize(
    ("meters", "setting", "per_meter"),
    [
        (2, None, True),
        (PER_METER_HISTOGRAMS_UP_TO, None, True),
        (PER_METER_HISTOGRAMS_UP_TO + 1, None, False),
        (PER_METER_HISTOGRAMS_UP_TO + 1, True, True),
        (2, False, False),
    ],
)
async def test_per_meter_histograms_are_optional_the_fleet_one_is_not(
    storage: Storage, meters: int, setting: bool | None, per_meter: bool
) -> None:
    section: dict[str, object] = {"listen": "127.0.0.1:0"}
    if setting is not None:
        section["per_meter_histograms"] = setting
    names = [f"m{i}" for i in range(meters)]
    exporter = PrometheusOutput.from_config(section, names)
    await exporter.start(storage)
    try:
        await exporter.publish([reading("m0", 0), reading("m1", 1)], [])
        families = await scrape(exporter)
    finally:
        await exporter.stop()
    assert ("kamstrup382_readout_duration_seconds" in families) is per_meter
    kind, samples = families["kamstrup382_fleet_readout_duration_seconds"]
    assert kind == "histogram"
    assert value(samples, "kamstrup382_fleet_readout_duration_seconds_count", protocol="iec") == 2
    assert value(
        samples, "kamstrup382_fleet_readout_duration_seconds_sum", protocol="iec"
    ) == pytest.approx(6.5 + 6.51)


async def test_the_outbox_backlog_per_output(storage: Storage) -> None:
    mqtt = MqttOutput.from_config({"url": "mqtt://127.0.0.1:1"}, ["house"])  # never started
    exporter = PrometheusOutput.from_config({"listen": "127.0.0.1:0"}, ["house"])
    exporter.backlog_refresh = 0.05
    exporter.watch([mqtt])
    oldest = reading("house", 0)
    await asyncio.to_thread(storage.record, [oldest, reading("house", 1)], outbox=True)
    await exporter.start(storage)
    try:

        def backlog(families: Families) -> tuple[float, float]:
            _, pending = families["kamstrup382_outbox_pending_readings"]
            _, age = families["kamstrup382_outbox_oldest_age_seconds"]
            return (
                value(pending, "kamstrup382_outbox_pending_readings", output="mqtt"),
                value(age, "kamstrup382_outbox_oldest_age_seconds", output="mqtt"),
            )

        pending, age = backlog(await scrape(exporter))
        assert pending == 2
        expected = (datetime.now(UTC) - oldest.read_at).total_seconds()
        assert expected - 60 < age <= expected
        # drained: the gauges follow within a refresh
        ids = [entry for entry, _ in await asyncio.to_thread(storage.outbox_pending)]
        await asyncio.to_thread(storage.outbox_done, ids)
        for _ in range(200):
            if backlog(await scrape(exporter)) == (0, 0):
                break
            await asyncio.sleep(0.05)
        assert backlog(await scrape(exporter)) == (0, 0)
    finally:
        await exporter.stop()


async def test_up_comes_back_from_the_storage_after_a_restart(storage: Storage) -> None:
    await asyncio.to_thread(storage.record, [reading("house", 1)], [failure("house", 2)])
    await asyncio.to_thread(storage.record, [reading("garage", 3)], [failure("garage", 2)])
    exporter = PrometheusOutput.from_config({"listen": "127.0.0.1:0"}, ["house", "garage"])
    await exporter.start(storage)
    try:
        _, samples = (await scrape(exporter))["kamstrup382_up"]
    finally:
        await exporter.stop()
    assert value(samples, "kamstrup382_up", meter="house") == 0
    assert value(samples, "kamstrup382_up", meter="garage") == 1


async def test_the_meters_intervals_come_from_their_config(storage: Storage) -> None:
    config = parse_config(
        {
            "collector": {"interval": "15m"},
            "meters": [
                {"name": "house", "port": "socket://127.0.0.1:1"},
                {"name": "barn", "port": "socket://127.0.0.1:2", "interval": "1h"},
            ],
        },
        env={},
    )
    exporter = PrometheusOutput.from_config({"listen": "127.0.0.1:0"}, config.meters)
    await exporter.start(storage)
    try:
        kind, samples = (await scrape(exporter))["kamstrup382_meter_interval_seconds"]
    finally:
        await exporter.stop()
    assert kind == "gauge"
    assert value(samples, "kamstrup382_meter_interval_seconds", meter="house") == 900
    assert value(samples, "kamstrup382_meter_interval_seconds", meter="barn") == 3600


async def test_a_reloaded_meter_list_adds_and_removes_series(output: PrometheusOutput) -> None:
    await output.publish([reading("house", 0), reading("garage", 0)], [failure("garage", 1)])
    text = await scrape_text(output)
    assert 'meter="garage"' in text
    output.meters_changed(["house", "barn"])  # garage removed, barn added
    text = await scrape_text(output)
    assert 'meter="garage"' not in text  # no series left to go stale
    assert 'kamstrup382_up{meter="barn"} 0.0' in text
    assert 'kamstrup382_up{meter="house"} 1.0' in text
    assert await promtool_check_metrics(text) == ""


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
