"""The emulated 382C: the same meter model in the 382C's dialect (identification, codes,
decimals, tariffs 1-4), served so that ``k382 read`` gives the 382C's registers."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from kamstrup382.clock import ManualClock
from kamstrup382.emulator import ConstantLoad, MeterModel, MeterSettings
from kamstrup382.errors import ConfigError, UsageError
from kamstrup382.protocol import (
    KAMSTRUP_382C,
    BccMode,
    check_telegram,
    decode_reply,
    strip_parity,
)
from tests.emulator.test_cli_emulate import command, emulate, meters, stop
from tests.fixtures.emulator import RawLine

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
C = MeterSettings(model="382c", actual_peak_kw=Decimal("1.078"))


def model(settings: MeterSettings = C, kw: float = 6.0) -> tuple[MeterModel, ManualClock]:
    clock = ManualClock(T0)
    return MeterModel(settings, load=ConstantLoad(kw), clock=clock), clock


def test_a_382c_speaks_its_own_dialect() -> None:
    meter, _ = model()
    telegram = decode_reply(meter.telegram(), bcc=BccMode.AUTO)
    assert str(telegram.identification) == "/KAM 68438BC450000"
    assert telegram.dialect is KAMSTRUP_382C
    assert [ds.address for ds in telegram.data_sets] == [
        "0.0.0", "1.8.0", "1.8.1", "1.8.2", "1.8.3", "1.8.4", "96.8.0", "0.128.1", "1.6.0",
    ]  # fmt: skip
    assert telegram.get("1.6.0") is not None
    assert telegram.get("actual_peak").text == "1.078"  # type: ignore[union-attr]
    values = telegram.meter_values()
    assert (values.tariff_3, values.tariff_4, values.last_month_peak) == (0, 0, None)
    check_telegram(telegram)


def test_tariffs_3_and_4_and_a_three_decimal_peak() -> None:
    meter, clock = model(kw=6.0)
    meter.select_tariff(3)
    clock.advance(timedelta(hours=1))  # 6 kWh on tariff 3, a full demand period at 6 kW
    meter.select_tariff(4)
    clock.advance(timedelta(minutes=30))  # 3 kWh on tariff 4
    meter.select_tariff(None)
    assert meter.tariff == 1
    assert (meter.tariff_kwh(3), meter.tariff_kwh(4)) == (Fraction(6), Fraction(3))
    values = meter.values()
    assert (values.energy, values.tariff_3, values.tariff_4) == (62, 6, 3)
    assert values.actual_peak == Decimal("6.000")
    assert str(values.actual_peak) == "6.000"
    check_telegram(decode_reply(meter.telegram(), bcc=BccMode.AUTO))
    with pytest.raises(UsageError, match="tariffs 3 to 4"):
        meter.select_tariff(2)
    plain, _ = model(MeterSettings())
    with pytest.raises(UsageError, match="685-382 has tariffs 1 and 2 only"):
        plain.select_tariff(3)
    with pytest.raises(UsageError, match="1 to 2"):
        plain.tariff_kwh(3)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"model": "382x"}, "model"),
        ({"model": "685-382", "tariff_3_kwh": 1, "energy_kwh": 54}, "tariff_3_kwh"),
        ({"energy_kwh": 54}, "energy_kwh"),  # not 33 + 20 + 0 + 0
        ({"actual_peak_kw": Decimal("1.0785")}, "actual_peak_kw"),
        ({"actual_peak_kw": Decimal("80.000")}, "actual_peak_kw"),  # above 79.695 kW
        ({"identification_text": "685-382-OK-15"}, "identification_text"),
        ({"model": "685-382", "identification_text": "68438BC450000"}, "identification_text"),
    ],
)
def test_settings_of_a_382c_check_themselves(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MeterSettings(**{"model": "382c", **changes})  # type: ignore[arg-type]
    assert caught.value.key == key


def test_energy_of_a_382c_is_the_sum_of_four_tariffs() -> None:
    settings = MeterSettings(
        model="382c", energy_kwh=100, tariff_1_kwh=40, tariff_2_kwh=30, tariff_3_kwh=20,
        tariff_4_kwh=10, identification_text="68438BC450001",
    )  # fmt: skip
    meter, _ = model(settings)
    telegram = decode_reply(meter.telegram(), bcc=BccMode.AUTO)
    assert str(telegram.identification) == "/KAM 68438BC450001"
    assert telegram.registers["tariff_4"] == 10


def test_k382_emulate_model_382c_is_read_with_its_registers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kamstrup382.cli import main

    with emulate(
        "--model", "382c", "--speed", "200", "--delay", "0.02", "--load", "constant:4",
        "--control", stdin=True,
    ) as (proc, lines):  # fmt: skip
        ((customer, port),) = meters(lines)
        assert command(proc, "tariff 4") == (
            "k382 emulate: ok: every meter: tariff 4 (the meter's own selection)"
        )
        with RawLine(port) as line:
            line.send()
            telegram = decode_reply(strip_parity(line.read_reply()), bcc=BccMode.AUTO)
        assert telegram.dialect is KAMSTRUP_382C
        code = main(["read", port])
        out, err = capsys.readouterr()
        stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert "identification  /KAM 68438BC450000  (Kamstrup 382C)" in out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line[:1].isdigit()}
    assert rows["customer_number"] == ["0.0.0", "customer_number", customer]
    assert rows["tariff_4"][0] == "1.8.4" and rows["tariff_4"][3] == "kWh"
    assert rows["actual_peak"][0] == "1.6.0"
    assert len(rows["actual_peak"][2].partition(".")[2]) == 3  # three decimals
    assert "last_month_peak" not in rows


def test_a_382c_peak_restarts_at_zero_with_three_decimals_at_the_month() -> None:
    meter, clock = model(kw=2.5)
    clock.advance(timedelta(hours=1))
    assert str(meter.values().actual_peak) == "2.500"
    clock.set(datetime(2026, 4, 1, 0, 1, tzinfo=UTC))  # past the month boundary (UTC zone)
    values = meter.values()
    assert str(values.actual_peak) == "0.000"  # restarted, printed 0.000
    assert values.last_month_peak is None  # the 382C keeps no last month's peak
    check_telegram(decode_reply(meter.telegram(), bcc=BccMode.AUTO))
