"""One collector, a 685-382 and a 382C: each read in its own dialect, judged by its own rules
and stored side by side (a register a meter does not have: NULL, absent), into SQLite and
PostgreSQL, against the emulator over TCP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from kamstrup382.cli import main
from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.emulator import EmulatorThread, MeterModel, MeterSettings
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config

SPEED = 200.0


async def test_a_685_382_and_a_382c_are_collected_side_by_side(storage_url: str) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 10, 7, 31, tzinfo=UTC))
    models = [
        MeterModel(MeterSettings()),
        MeterModel(
            MeterSettings(
                model="382c",
                customer_number="14410000",
                energy_kwh=36886,
                tariff_1_kwh=36886,
                tariff_2_kwh=0,
                hour_counter_h=119899,
                actual_peak_kw=Decimal("1.078"),
            )
        ),
    ]
    with EmulatorThread(models, transport="tcp", speed=SPEED, delay=0.02) as emu:
        config = make_config(storage_url, emu.ports)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, [], clock=clock) as collector:
                first = await collector.run_once()
                clock.advance(timedelta(minutes=15))
                second = await collector.run_once()
        sent = [emu.sent_values(i)[-1] for i in range(2)]
    assert first.ok and second.ok, (first, second)
    with open_storage(storage_url) as storage:
        rows = list(storage.readings())
    assert [(r.meter, r.slot.minute) for r in rows] == [
        ("m0", 0),
        ("m0", 15),
        ("m1", 0),
        ("m1", 15),
    ]
    last = {r.meter: r for r in rows}
    old, c = last["m0"], last["m1"]
    assert old.values == sent[0]
    assert c.values == sent[1]
    assert c.identification == "KAM 68438BC450000"
    assert c.type_number is None
    assert (c.values.customer_number, c.values.energy) == ("14410000", 36886)
    assert c.values.tariff_3 == 0 and c.values.tariff_4 == 0  # sent: 0, not absent
    assert c.values.last_month_peak is None  # the 382C has none: NULL, never 0
    assert str(c.values.actual_peak) == "1.078"
    assert (old.values.tariff_3, old.values.tariff_4) == (None, None)
    assert str(old.values.actual_peak) == "18.3"
    # the second reading of each followed its first by the rules of its own dialect
    assert [r.attempts for r in rows if r.slot.minute == 15] == [1, 1]


def test_k382_collect_once_stores_both(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    models = [MeterModel(MeterSettings()), MeterModel(MeterSettings(model="382c"))]
    with EmulatorThread(models, transport="tcp", speed=SPEED, delay=0.02) as emu:
        config = tmp_path / "k382.toml"
        config.write_text(
            f'[storage]\nurl = "{url}"\n[collector]\nanswer_timeout = 0.3\nbackoff = 0.05\n'
            + "".join(
                f'[[meters]]\nname = "{name}"\nport = "{port}"\n'
                for name, port in zip(("old", "c"), emu.ports, strict=True)
            ),
            encoding="utf-8",
        )
        assert main(["collect", "--config", str(config), "--once"]) == 0
        sent = {"old": emu.sent_values(0)[-1], "c": emu.sent_values(1)[-1]}
    with open_storage(url) as storage:
        stored = {r.meter: r.values for r in storage.readings()}
    assert stored == sent
    assert stored["c"].last_month_peak is None and stored["old"].tariff_4 is None
