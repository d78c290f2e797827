"""The model reuses its last values and encoded reply while the registers shown do not change:
it must never serve a stale one."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kamstrup382.clock import ManualClock
from kamstrup382.emulator import ConstantLoad, MeterModel, MeterSettings
from kamstrup382.protocol import BccAlgorithm, EndMarker, MeterValues, encode_reply

START = datetime(2026, 1, 31, 22, 0, tzinfo=UTC)
MONTH = datetime(2026, 2, 1, tzinfo=UTC)
FORMS = [
    (BccAlgorithm.SUM7, EndMarker.INLINE, False),
    (BccAlgorithm.XOR, EndMarker.INLINE, True),
    (BccAlgorithm.SUM7, EndMarker.INLINE, True),
]


def expected_peaks(at: datetime) -> tuple[Decimal, Decimal]:
    """1.6 and 1.6*1 under 3 kW from START (1.6 starting at 0.0, 15-minute periods)."""
    if at < MONTH:
        return Decimal("3.0" if at >= START + timedelta(minutes=15) else "0.0"), Decimal("0.0")
    return Decimal("3.0" if at >= MONTH + timedelta(minutes=15) else "0.0"), Decimal("3.0")


def test_every_snapshot_shows_the_exact_state_now() -> None:
    clock = ManualClock(START)
    settings = MeterSettings(
        energy_kwh=9_999_998,  # wraps on the way
        tariff_1_kwh=9_999_978,
        tariff_2_kwh=20,
        actual_peak_kw=Decimal("0.0"),
    )
    model = MeterModel(settings, ConstantLoad(3), clock)
    step = timedelta(seconds=37)
    for n in range(400):  # 4 h 6 min: kWh and hour boundaries, peaks, a month boundary
        if n % 50 == 25:
            model.tariff_input = not model.tariff_input
        for bcc, end_marker, eight_bit in FORMS:
            snap = model.snapshot(bcc=bcc, end_marker=end_marker, eight_bit=eight_bit)
            peak, last_peak = expected_peaks(snap.at)
            expected = MeterValues(
                customer_number=settings.customer_number,
                energy=Decimal(math.floor(model.energy_kwh) % 10**7),
                tariff_1=Decimal(math.floor(model.tariff_kwh(1)) % 10**7),
                tariff_2=Decimal(math.floor(model.tariff_kwh(2)) % 10**7),
                hour_counter=Decimal(math.floor(model.hours) % 10**7),
                pulse_input=Decimal(0),
                actual_peak=peak,
                last_month_peak=last_peak,
            )
            assert snap.at == clock.now()
            assert snap.values == expected, (n, snap.at)
            assert snap.telegram == encode_reply(
                model.identification, expected, bcc=bcc, end_marker=end_marker, eight_bit=eight_bit
            )
        clock.advance(step)
    final = model.values()
    assert final.energy < 100  # it did wrap
    assert final.last_month_peak == Decimal("3.0")
    assert final.tariff_2 > 20 and final.tariff_1 > 9_999_978  # both tariffs took energy


def test_a_pulse_in_shows_at_once_and_an_unchanged_meter_reuses_its_reply() -> None:
    clock = ManualClock(START)
    model = MeterModel(MeterSettings(pulse_input_mode=True), ConstantLoad(1), clock)
    first = model.snapshot()
    again = model.snapshot()
    assert again.telegram is first.telegram  # reused: nothing shown has changed
    model.pulse_in(3)
    assert model.snapshot().values.pulse_input == 3  # no clock move needed
    clock.advance(timedelta(seconds=1))
    assert model.snapshot().values.pulse_input == 3
    clock.advance(timedelta(hours=1))
    later = model.snapshot()
    assert (later.values.energy, later.values.hour_counter) == (Decimal(54), Decimal(483))
    assert later.telegram == encode_reply(model.identification, later.values)
