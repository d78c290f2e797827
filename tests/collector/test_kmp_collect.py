"""One collector, every kind of Kamstrup 382 on the optical port: a 685-382 and a 382C (mode A,
on the mode A emulator) and a 382Jx3 (KMP, on the KMP emulator), read side by side into SQLite
and PostgreSQL; each stored value against what the emulators sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.emulator import EmulatorThread, MeterModel, MeterSettings
from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.protocol.kmp import (
    KMP_REGISTER_BY_NAME,
)
from kamstrup382.storage import FailureRecord, KmpReadingRecord, ReadingRecord
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config

SPEED = 200.0
T0 = datetime(2026, 3, 1, 10, 7, 31, tzinfo=UTC)


def mode_a_models() -> list[MeterModel]:
    return [MeterModel(MeterSettings()), MeterModel(MeterSettings(model="382c"))]


async def test_every_kind_is_collected_side_by_side(storage_url: str) -> None:
    clock = ManualClock(T0)
    with (
        EmulatorThread(mode_a_models(), transport="tcp", speed=SPEED, delay=0.02) as mode_a,
        KmpEmulatorThread(1) as kmp,
    ):
        config = make_config(
            storage_url, [*mode_a.ports, *kmp.ports], meter_extra={2: 'protocol = "kmp"'}
        )
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, [], clock=clock) as collector:
                first = await collector.run_once()
                first_truth = kmp.readout_values(0)
                clock.advance(timedelta(minutes=15))
                second = await collector.run_once()
                second_truth = kmp.readout_values(0)
        sent = [mode_a.sent_values(i)[-1] for i in range(2)]
    assert first.ok and second.ok, (first, second)
    with open_storage(storage_url) as storage:
        rows = list(storage.readings())
        latest = storage.latest("m2")
        status = {s.meter: s for s in storage.status()}
    assert [(r.meter, r.slot.minute, r.protocol) for r in rows] == [
        ("m0", 0, "iec"),
        ("m0", 15, "iec"),
        ("m1", 0, "iec"),
        ("m1", 15, "iec"),
        ("m2", 0, "kmp"),
        ("m2", 15, "kmp"),
    ]
    old, c = (r for r in rows[1:4:2] if isinstance(r, ReadingRecord))
    assert old.values == sent[0] and c.values == sent[1]
    kmp_rows = [r for r in rows if isinstance(r, KmpReadingRecord)]
    assert dict(kmp_rows[0].values) == first_truth
    assert dict(kmp_rows[1].values) == second_truth
    assert set(second_truth) == set(KMP_REGISTER_BY_NAME)  # the whole 382 set, each stored
    assert str(kmp_rows[1].values["energy_hires"]) == str(second_truth["energy_hires"])
    assert isinstance(latest, KmpReadingRecord) and latest.slot == kmp_rows[1].slot
    assert (latest.meter_type, latest.software_revision) == (0x0382, "A1")
    assert latest.exchanges == 4  # GetType, GetSerialNo, two GetRegister of at most 8
    assert status["m2"].successes == 2 and status["m2"].failures == 0


async def test_kmp_line_damage_is_retried_and_silence_is_a_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    clock = ManualClock(T0)
    damaged = KmpFaults.parse("script=crc/none/stuffing/none/none/none")
    with (
        KmpEmulatorThread(1, faults=damaged) as noisy,
        KmpEmulatorThread(1, faults=KmpFaults.parse("silent=1")) as silent,
    ):
        config = make_config(
            url,
            [*noisy.ports, *silent.ports],
            meter_extra={0: 'protocol = "kmp"', 1: 'protocol = "kmp"\nretries = 1'},
        )
        with open_storage(url) as storage:
            async with Collector(config, storage, [], clock=clock) as collector:
                result = await collector.run_once()
    assert [r.meter for r in result.readings] == ["m0"]
    reading = result.readings[0]
    assert isinstance(reading, KmpReadingRecord)
    assert reading.exchanges == 4 and reading.attempts == 6  # two exchanges tried twice
    [failure] = result.failures
    assert (failure.meter, failure.kind, failure.attempts) == ("m1", "timeout", 2)
    with open_storage(url) as storage:
        [stored] = list(storage.failures())
    assert isinstance(stored, FailureRecord) and stored.kind == "timeout"


async def test_auto_finds_each_protocol_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    clock = ManualClock(T0)
    with (
        EmulatorThread(mode_a_models()[:1], transport="tcp", speed=SPEED, delay=0.02) as mode_a,
        KmpEmulatorThread(1) as kmp,
    ):
        config = make_config(
            url,
            [*mode_a.ports, *kmp.ports],
            meter_extra={0: 'protocol = "auto"', 1: 'protocol = "auto"'},
        )
        with open_storage(url) as storage:
            async with Collector(config, storage, [], clock=clock) as collector:
                first = await collector.run_once()
                found = (collector.protocols.found("m0"), collector.protocols.found("m1"))
                clock.advance(timedelta(minutes=15))
                second = await collector.run_once()
        with open_storage(url) as storage:  # a restart knows what was found
            async with Collector(config, storage, [], clock=clock) as collector:
                known = (collector.protocols.found("m0"), collector.protocols.found("m1"))
    assert first.ok and second.ok, (first, second)
    assert found == (("iec", None), ("kmp", (9600, 1)))
    assert known == found
    assert [type(r).__name__ for r in second.readings] == ["ReadingRecord", "KmpReadingRecord"]


def test_k382_collect_once_reads_all_three(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with (
        EmulatorThread(mode_a_models(), transport="tcp", speed=SPEED, delay=0.02) as mode_a,
        KmpEmulatorThread(1) as kmp,
    ):
        config = tmp_path / "k382.toml"
        meters = zip(("old", "c", "jx3"), [*mode_a.ports, *kmp.ports], strict=True)
        config.write_text(
            f'[storage]\nurl = "{url}"\n[collector]\nanswer_timeout = 0.3\nbackoff = 0.05\n'
            + "".join(f'[[meters]]\nname = "{name}"\nport = "{port}"\n' for name, port in meters)
            + 'protocol = "kmp"\nregisters = ["energy", "power", "voltage_l1"]\n',
            encoding="utf-8",
        )
        assert main(["collect", "--config", str(config), "--once"]) == 0
        truth = kmp.readout_values(0)
    capsys.readouterr()
    assert main(["export", "--config", str(config), "--format", "jsonl"]) == 0
    documents = {d["meter"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(documents) == {"old", "c", "jx3"}
    jx3 = documents["jx3"]
    assert jx3["protocol"] == "kmp"
    assert list(jx3["registers"]) == ["energy", "power", "voltage_l1"]  # what was asked for
    assert {name: Decimal(str(r["value"])) for name, r in jx3["registers"].items()} == truth
    assert documents["c"]["dialect"] == "kamstrup-382c"
