"""The meter model on a virtual clock: a month in milliseconds."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.clock import ManualClock
from kamstrup382.emulator import (
    ConstantLoad,
    CsvLoad,
    ExactLoad,
    HouseholdLoad,
    MeterModel,
    MeterSettings,
    TariffSchedule,
)
from kamstrup382.emulator.load import Power
from kamstrup382.errors import UsageError
from kamstrup382.protocol import (
    BccAlgorithm,
    EndMarker,
    MeterValues,
    add_parity,
    bcc_sum7,
    bcc_xor,
    decode_reply,
)

DATA = Path(__file__).parent.parent / "data"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)
ZERO = MeterSettings(
    energy_kwh=0,
    tariff_1_kwh=0,
    tariff_2_kwh=0,
    hour_counter_h=0,
    actual_peak_kw=Decimal("0.0"),
)


def registers(values: MeterValues, *names: str) -> tuple[int, ...]:
    """Whole-number registers as ints, for short comparisons."""
    return tuple(int(getattr(values, name)) for name in names)


def meter(
    load: object = None,
    *,
    start: datetime = T0,
    settings: MeterSettings | None = None,
    schedule: str | TariffSchedule | None = None,
) -> tuple[MeterModel, ManualClock]:
    clock = ManualClock(start)
    model = MeterModel(
        settings,
        load if load is not None else ConstantLoad(0),  # type: ignore[arg-type]
        clock,
        tariff_schedule=schedule,
    )
    return model, clock


# -- the specification's example ----------------------------------------------------------


def test_fresh_model_sends_the_specification_example_byte_for_byte() -> None:
    model, _ = meter(HouseholdLoad())
    reply = model.telegram()
    assert reply == (DATA / "spec-example.bin").read_bytes()
    assert len(reply) == 167
    assert reply[-1:] == b">"
    assert reply[-2] == 0x03
    assert bcc_sum7(reply[reply.index(b"\x02") + 1 : -1]) == ord(">")


def test_reply_variants_come_from_the_encoder() -> None:
    model, _ = meter()
    plain = model.telegram()
    assert model.telegram(eight_bit=True) == add_parity(plain)
    xor = model.telegram(BccAlgorithm.XOR)
    assert xor[:-1] == plain[:-1]
    assert xor[-1] == bcc_xor(plain[plain.index(b"\x02") + 1 : -1])
    own_line = model.telegram(end_marker=EndMarker.OWN_LINE)
    assert b"1.6*1(000000,0)\r\n!\r\n\x03" in own_line


def test_identification_and_settings() -> None:
    model, _ = meter(settings=MeterSettings(type_number="685-161-SK-01", label="42"))
    assert str(model.identification) == "/KAM 685-161-SK-42"
    tn = model.identification.type_number
    assert tn is not None and (tn.phases, tn.current_code, tn.module) == (1, 6, "SK")
    model2, _ = meter(settings=MeterSettings(customer_number="12345678"))
    assert model2.values().customer_number == "12345678"
    assert b"0.0(12345678)" in model2.telegram()


def test_snapshot_is_consistent_and_decodes_to_its_values() -> None:
    model, clock = meter(HouseholdLoad(seed=4))
    clock.advance(timedelta(days=3, hours=5))
    snap = model.snapshot()
    assert snap.at == T0 + timedelta(days=3, hours=5)
    assert decode_reply(snap.telegram).meter_values() == snap.values
    assert snap.values == model.values()


# -- energy ---------------------------------------------------------------------------------


def test_constant_load_energy_is_exact() -> None:
    model, clock = meter(ConstantLoad(2), settings=ZERO)
    clock.advance(timedelta(hours=10, minutes=30))
    assert model.energy_kwh == 21
    assert model.values().energy == 21
    clock.advance(timedelta(minutes=14))  # 21 + 0.4666.. kWh: the register still shows 21
    assert model.values().energy == 21
    assert model.energy_kwh == 21 + Fraction(28, 60)
    clock.advance(timedelta(minutes=16))
    assert model.values().energy == 22


def test_starting_registers_keep_counting() -> None:
    model, clock = meter(ConstantLoad(1))
    clock.advance(timedelta(hours=7))
    v = model.values()
    assert registers(v, "energy", "tariff_1", "tariff_2", "hour_counter") == (60, 40, 20, 489)


def test_load_can_be_swapped_from_now_on() -> None:
    model, clock = meter(ConstantLoad(1), settings=ZERO)
    clock.advance(HOUR)
    model.load = ConstantLoad(4)
    clock.advance(HOUR)
    assert model.energy_kwh == 5
    assert isinstance(model.load, ConstantLoad)


def test_csv_load_drives_the_meter(tmp_path: Path) -> None:
    path = tmp_path / "load.csv"
    path.write_text("timestamp,kw\n2026-01-01T00:00Z,1\n2026-01-01T02:00Z,3\n2026-01-01T03:00Z,0\n")
    model, clock = meter(CsvLoad(path), settings=ZERO)
    clock.advance(timedelta(days=2))
    assert model.energy_kwh == 5
    v = model.values()
    assert v.energy == 5
    assert v.actual_peak == Decimal("3.0")


# -- tariffs --------------------------------------------------------------------------------


def test_tariff_input_splits_energy() -> None:
    model, clock = meter(ConstantLoad(3), settings=ZERO)
    assert model.tariff == 1 and model.tariff_input is False
    clock.advance(timedelta(hours=2, minutes=20))  # 7 kWh on tariff 1
    model.tariff_input = True  # pins 1 and 4 shorted: tariff 2
    assert model.tariff == 2
    clock.advance(timedelta(hours=1, minutes=10))  # 3.5 kWh on tariff 2
    model.tariff_input = False
    clock.advance(timedelta(minutes=10))  # 0.5 kWh on tariff 1
    assert model.tariff_kwh(1) == Fraction(15, 2)
    assert model.tariff_kwh(2) == Fraction(7, 2)
    assert model.energy_kwh == 11
    v = model.values()
    assert registers(v, "energy", "tariff_1", "tariff_2") == (
        11,
        7,
        3,
    )  # 1.20 = 1.20.1 + 1.20.2 + 1 here


def test_schedule_switches_exactly_at_its_boundaries() -> None:
    # created at 00:00 inside the night range; one step over 30 hours
    model, clock = meter(ConstantLoad(1), settings=ZERO, schedule="22:00-06:00")
    assert model.tariff_input is True and model.tariff == 2
    clock.advance(timedelta(hours=30))
    # 00-06 (6 h) and 22-24 (2 h) at tariff 2; 06-22 (16 h) and the next 00-06 (6 h) too
    assert model.tariff_kwh(2) == 6 + 2 + 6
    assert model.tariff_kwh(1) == 16
    assert model.tariff_input is False  # 06:00 on the second day: the night is over
    with pytest.raises(UsageError, match="schedule drives"):
        model.tariff_input = False


def test_schedule_with_uneven_steps_and_sub_second_boundaries() -> None:
    model, clock = meter(ConstantLoad(Decimal("0.6")), settings=ZERO, schedule="08:00:30-08:00:31")
    for _ in range(3):
        clock.advance(timedelta(hours=3, minutes=7, seconds=13, microseconds=1))
    clock.advance(timedelta(days=2))
    # three one-second windows (08:00:30 on each of three days) at tariff 2
    assert model.tariff_kwh(2) == 3 * Fraction(6, 10) / 3600


def test_schedule_can_be_set_and_removed_while_running() -> None:
    model, clock = meter(ConstantLoad(1), settings=ZERO, start=T0 + 20 * HOUR)
    clock.advance(HOUR)  # 20:00-21:00 on tariff 1 (input open)
    model.tariff_schedule = "21:00-22:00"
    assert model.tariff == 2 and str(model.tariff_schedule) == "21:00-22:00"
    clock.advance(timedelta(minutes=30))
    model.tariff_schedule = None  # manual again: the input stays where the schedule left it
    assert model.tariff_input is True and model.tariff_schedule is None
    clock.advance(timedelta(hours=2))
    model.tariff_input = False
    clock.advance(HOUR)
    assert (model.tariff_kwh(1), model.tariff_kwh(2)) == (Fraction(2), Fraction(5, 2))
    pulses, _ = meter(settings=replace(ZERO, pulse_input_mode=True))
    with pytest.raises(UsageError, match="pulse input mode"):
        pulses.tariff_schedule = "21:00-22:00"


def test_schedule_in_a_zone() -> None:
    cph = TariffSchedule.parse("22:00-06:00", zone=ZoneInfo("Europe/Copenhagen"))
    model, clock = meter(ConstantLoad(1), settings=ZERO, schedule=cph)
    clock.set(T0 + timedelta(hours=21))  # 22:00 in Copenhagen
    assert model.tariff_kwh(2) == 5  # 00:00-05:00 UTC = 01:00-06:00 in Copenhagen
    assert model.tariff == 2


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.integers(1, 6 * 3600 * 10**6), min_size=1, max_size=25))
def test_total_is_the_sum_of_the_tariffs_up_to_rounding(steps: list[int]) -> None:
    model, clock = meter(HouseholdLoad(seed=2), schedule="22:00-06:00,12:00-12:45")
    for us in steps:
        clock.advance(us * US)
        v = model.values()
        assert v.energy - (v.tariff_1 + v.tariff_2) in (0, 1)
        assert model.energy_kwh == model.tariff_kwh(1) + model.tariff_kwh(2)


# -- hour counter, pulse input ------------------------------------------------------------------


def test_hour_counter_counts_operating_hours() -> None:
    model, clock = meter()
    clock.advance(timedelta(minutes=59, seconds=59))
    assert model.values().hour_counter == 482
    clock.advance(timedelta(seconds=1))
    assert model.values().hour_counter == 483
    assert model.hours == 483
    clock.advance(timedelta(days=30, minutes=30))
    assert model.values().hour_counter == 483 + 720
    assert model.hours == 483 + 720 + Fraction(1, 2)


def test_pulse_input_mode_counts_pulses_on_pin_4() -> None:
    model, clock = meter(ConstantLoad(1), settings=replace(ZERO, pulse_input_mode=True))
    model.pulse_in()
    model.pulse_in(41)
    model.pulse_in(0)
    assert model.values().pulse_input == 42
    clock.advance(HOUR)
    assert model.tariff_kwh(1) == 1 and model.tariff_kwh(2) == 0
    with pytest.raises(UsageError, match="pulse input mode"):
        model.tariff_input = True
    with pytest.raises(UsageError, match="non-negative"):
        model.pulse_in(-1)
    with pytest.raises(UsageError, match="pulse input mode"):
        MeterModel(
            replace(ZERO, pulse_input_mode=True), ConstantLoad(1), ManualClock(T0), "22:00-06:00"
        )


def test_without_pulse_input_mode_pin_4_is_the_tariff() -> None:
    model, _ = meter()
    with pytest.raises(UsageError, match="pulse_input_mode"):
        model.pulse_in()
    assert model.values().pulse_input == 0


# -- wrapping -----------------------------------------------------------------------------------


def test_registers_wrap_after_9999999() -> None:
    start = MeterSettings(
        energy_kwh=9_999_990,
        tariff_1_kwh=9_999_995,
        tariff_2_kwh=9_999_995,  # energy = tariff 1 + tariff 2, modulo the wrap
        hour_counter_h=9_999_999,
        pulse_input=9_999_998,
        pulse_input_mode=True,
    )
    model, clock = meter(ConstantLoad(10), settings=start)
    model.pulse_in(1)
    v = model.values()
    assert registers(v, "energy", "tariff_1", "hour_counter", "pulse_input") == (
        9_999_990,
        9_999_995,
        9_999_999,
        9_999_999,
    )
    clock.advance(timedelta(minutes=30))  # +5 kWh
    model.pulse_in(3)
    v = model.values()
    assert registers(v, "energy", "tariff_1", "hour_counter", "pulse_input") == (
        9_999_995,
        0,
        9_999_999,
        2,
    )
    clock.advance(timedelta(hours=1, minutes=30))  # +15 kWh, the hour counter passes 10**7
    v = model.values()
    assert registers(v, "energy", "tariff_1", "hour_counter") == (10, 15, 1)
    assert b"1.20(0000010*kWh)" in model.telegram()
    assert model.energy_kwh == 10_000_010  # inside, nothing is lost


# -- peaks --------------------------------------------------------------------------------------


def test_peak_is_the_highest_complete_demand_period() -> None:
    model, clock = meter(ConstantLoad(2), settings=ZERO)
    clock.advance(timedelta(minutes=14, seconds=59))
    assert model.values().actual_peak == 0  # the first period is not complete yet
    clock.advance(timedelta(seconds=1))
    assert model.values().actual_peak == Decimal("2.0")
    model.load = ConstantLoad(Decimal("4.99"))
    clock.advance(timedelta(minutes=5))  # 5 min at 4.99 kW, then 10 min at 1 kW
    model.load = ConstantLoad(1)
    clock.advance(timedelta(minutes=10))
    # (4.99 x 5 + 1 x 10) / 15 = 2.33: shown truncated to a tenth
    assert model.values().actual_peak == Decimal("2.3")
    clock.advance(timedelta(hours=5))
    assert model.values().actual_peak == Decimal("2.3")


def test_only_complete_periods_count() -> None:
    # created in the middle of a period with a heavy load: that period does not count
    model, clock = meter(ConstantLoad(9), settings=ZERO, start=T0 + timedelta(minutes=7))
    clock.set(T0 + timedelta(minutes=15))
    assert model.values().actual_peak == 0
    model.load = ConstantLoad(1)
    clock.advance(timedelta(minutes=15))
    assert model.values().actual_peak == Decimal("1.0")


def test_month_boundary_moves_the_peak_to_last_month() -> None:
    model, clock = meter(
        ConstantLoad(1), settings=ZERO, start=datetime(2026, 1, 31, 23, tzinfo=UTC)
    )
    clock.advance(timedelta(minutes=30))
    model.load = ConstantLoad(Decimal("7.25"))
    clock.advance(timedelta(minutes=30))  # the last two periods of January at 7.25 kW
    # the period ending at 00:00 counts for January; at 00:00 the peak moves to 1.6*1
    v = model.values()
    assert (v.actual_peak, v.last_month_peak) == (Decimal("0.0"), Decimal("7.2"))
    assert b"1.6(000000,0*kW)\r\n1.6*1(000007,2)!" in model.telegram()
    clock.advance(timedelta(minutes=15))
    v = model.values()
    assert (v.actual_peak, v.last_month_peak) == (Decimal("7.2"), Decimal("7.2"))


def test_month_boundary_in_one_big_step() -> None:
    model, clock = meter(ConstantLoad(1), settings=ZERO)
    clock.advance(timedelta(days=10))
    model.load = ConstantLoad(Decimal("6.66"))
    clock.advance(timedelta(minutes=15))
    model.load = ConstantLoad(Decimal("0.5"))
    # one step over the rest of January and half of February
    clock.set(datetime(2026, 2, 15, tzinfo=UTC))
    v = model.values()
    assert v.last_month_peak == Decimal("6.6")
    assert v.actual_peak == Decimal("0.5")
    clock.set(datetime(2026, 4, 1, 0, 10, tzinfo=UTC))  # past March: February's peak moves on
    v = model.values()
    assert (v.last_month_peak, v.actual_peak) == (Decimal("0.5"), Decimal("0.0"))
    assert b"1.6(000000,0*kW)\r\n1.6*1(000000,5)!" in model.telegram()


def test_initial_peak_is_this_months_and_moves_too() -> None:
    model, clock = meter(ConstantLoad(3))  # spec defaults: 1.6 = 18.3
    clock.set(datetime(2026, 1, 20, tzinfo=UTC))
    assert model.values().actual_peak == Decimal("18.3")
    clock.set(datetime(2026, 2, 1, 1, tzinfo=UTC))
    v = model.values()
    assert (v.actual_peak, v.last_month_peak) == (Decimal("3.0"), Decimal("18.3"))


def test_month_boundary_in_a_zone_and_longer_periods() -> None:
    cph = MeterSettings(
        energy_kwh=0,
        tariff_1_kwh=0,
        tariff_2_kwh=0,
        actual_peak_kw=Decimal("0.0"),
        zone=ZoneInfo("Europe/Copenhagen"),
        demand_period=timedelta(hours=1),
    )
    # 2026-01-31 22:00 UTC = 23:00 in Copenhagen: one hour before February there
    model, clock = meter(ConstantLoad(4), settings=cph, start=datetime(2026, 1, 31, 22, tzinfo=UTC))
    clock.advance(timedelta(minutes=59))
    assert model.values().actual_peak == 0
    clock.advance(MINUTE)  # 23:00 UTC = 00:00 February 1st in Copenhagen
    v = model.values()
    assert (v.actual_peak, v.last_month_peak) == (Decimal("0.0"), Decimal("4.0"))
    clock.advance(timedelta(minutes=30))
    assert model.values().actual_peak == 0  # an hour-long period is not complete yet


# -- pulse out ----------------------------------------------------------------------------------


@pytest.mark.parametrize("constant", [1000, 800, 1, 10_000])
def test_pulses_out_equal_energy_times_the_constant(constant: int) -> None:
    model, clock = meter(HouseholdLoad(seed=9), settings=replace(ZERO, pulse_constant=constant))
    seen: list[tuple[int, datetime]] = []
    model.subscribe_pulses(lambda count, at: seen.append((count, at)))
    for minutes in (1, 7, 59, 600, 3000, 1):
        clock.advance(minutes * MINUTE)
        consumed = model.consumed_kwh
        assert model.pulses_out == math.floor(consumed * 1000 * constant / 1000)
    assert sum(count for count, _ in seen) == model.pulses_out
    assert [at for _, at in seen] == sorted(at for _, at in seen)


def test_pulse_instants_give_the_exact_power() -> None:
    # 3.6 kW at 1000 imp/kWh: one pulse a second, the n-th exactly n seconds after the start
    model, clock = meter(ConstantLoad("3.6"), settings=ZERO)
    seen: list[tuple[int, datetime]] = []
    unsubscribe = model.subscribe_pulses(lambda count, at: seen.append((count, at)))
    clock.advance(timedelta(seconds=10, milliseconds=500))
    assert model.pulses_out == 10
    assert seen == [(10, T0 + timedelta(seconds=10))]
    clock.advance(timedelta(minutes=20))
    assert model.advance() == T0 + timedelta(minutes=20, seconds=10, milliseconds=500)
    # pulses are reported per stretch of integration (demand periods cut them): 0:15, 0:20:10.5
    assert seen[1] == (890, T0 + timedelta(minutes=15))
    assert seen[2] == (310, T0 + timedelta(minutes=20, seconds=10))
    count, at = seen[2]
    power_kw = Fraction(count, 1000) / Fraction((at - seen[1][1]) // US, 3_600_000_000)
    assert power_kw == Fraction(36, 10)
    unsubscribe()
    clock.advance(HOUR)
    assert len(seen) == 3
    assert model.pulses_out == 1210 + 3600


def bursts(interpolation: str) -> CsvLoad:
    """7-minute blocks alternating between nothing and up to 9 kW: Newton gets no slope."""
    rows: list[tuple[datetime, Power]] = [
        (T0 + 7 * i * MINUTE, 0 if i % 2 else (i * 37) % 90 / 10) for i in range(200)
    ]
    return CsvLoad(rows, interpolation=interpolation)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "load",
    [HouseholdLoad(seed=1), bursts("step"), bursts("linear")],
    ids=["household", "csv-step", "csv-linear"],
)
def test_pulse_instant_of_a_varying_load_is_to_the_microsecond(load: ExactLoad) -> None:
    model, clock = meter(load, settings=replace(ZERO, pulse_constant=100))
    seen: list[tuple[int, datetime]] = []
    model.subscribe_pulses(lambda count, at: seen.append((count, at)))
    for _ in range(6):
        clock.advance(timedelta(minutes=61, seconds=7))
        model.advance()
    assert sum(count for count, _ in seen) == model.pulses_out > 100
    total = 0
    for count, at in seen:
        total += count
        level = Fraction(total, 100)
        assert load.energy_kwh_exact(T0, at) >= level > load.energy_kwh_exact(T0, at - US)


def test_callbacks_may_read_the_model() -> None:
    model, clock = meter(ConstantLoad(10), settings=ZERO)
    readings: list[Decimal] = []
    model.subscribe_pulses(lambda count, at: readings.append(model.values().energy))
    clock.advance(HOUR)
    model.values()
    assert readings and readings[-1] == 10


def test_next_pulse_at_is_exact_and_lets_a_program_follow_pulses_live() -> None:
    model, clock = meter(ConstantLoad("3.6"), settings=ZERO)
    assert model.next_pulse_at() == T0 + timedelta(seconds=1)
    clock.advance(timedelta(milliseconds=1500))
    assert model.next_pulse_at() == T0 + timedelta(seconds=2)
    household = HouseholdLoad(seed=6)
    live, live_clock = meter(household, settings=replace(ZERO, pulse_constant=2))
    seen: list[tuple[int, datetime]] = []
    live.subscribe_pulses(lambda count, at: seen.append((count, at)))
    for n in range(1, 8):
        nxt = live.next_pulse_at()
        assert nxt is not None
        live_clock.set(nxt)  # what a program does with clock.sleep_until(nxt)
        live.advance()
        assert seen[-1] == (1, nxt)
        assert live.pulses_out == n
        level = Fraction(n, 2)  # the n-th pulse: n / 2 kWh, reached in the microsecond before nxt
        assert (
            household.energy_kwh_exact(T0, nxt) >= level > household.energy_kwh_exact(T0, nxt - US)
        )


def test_next_pulse_at_without_load() -> None:
    model, _ = meter(ConstantLoad(0), settings=ZERO)
    assert model.next_pulse_at() is None
    slow, _ = meter(ConstantLoad("0.001"), settings=replace(ZERO, pulse_constant=1))
    assert slow.next_pulse_at(within=timedelta(days=30)) is None
    assert slow.next_pulse_at(within=timedelta(days=60)) == T0 + timedelta(hours=1000)
    with pytest.raises(UsageError, match="within"):
        slow.next_pulse_at(within=timedelta(0))


def test_a_failing_load_leaves_a_consistent_state() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.broken = False

        def power_kw(self, at: datetime) -> float:
            return 2.0

        def energy_kwh(self, start: datetime, end: datetime) -> float:
            if self.broken:
                raise OSError("sensor gone")
            return 2.0 * ((end - start) / HOUR)

    flaky = Flaky()
    model, clock = meter(flaky, settings=ZERO)
    seen: list[tuple[int, datetime]] = []
    model.subscribe_pulses(lambda count, at: seen.append((count, at)))
    clock.advance(timedelta(minutes=45))
    assert model.energy_kwh == Fraction(3, 2)
    flaky.broken = True
    clock.advance(timedelta(hours=2))
    with pytest.raises(OSError, match="sensor gone"):
        model.values()
    flaky.broken = False
    assert model.energy_kwh == Fraction(11, 2)  # nothing counted twice, nothing lost
    assert model.hours == Fraction(11, 4)
    assert model.values().actual_peak == Decimal("2.0")
    # the pulses of the stretches taken before the failure were not lost either
    assert sum(count for count, _ in seen) == model.pulses_out == 5500


# -- the many-small-steps property --------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    steps=st.lists(st.integers(0, 3 * 24 * 3600 * 10**6), min_size=1, max_size=12),
    seed=st.integers(0, 3),
    tariff_flips=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_many_small_steps_equal_one_big_step(
    steps: list[int], seed: int, tariff_flips: list[bool]
) -> None:
    """Exact integration: any way of cutting the time gives the same state, to the last bit."""
    start = datetime(2026, 1, 29, 13, 7, tzinfo=UTC)
    one, one_clock = meter(HouseholdLoad(seed), start=start, schedule="22:00-06:00,13:00-13:20")
    many, many_clock = meter(HouseholdLoad(seed), start=start, schedule="22:00-06:00,13:00-13:20")
    pulses: list[int] = []
    many.subscribe_pulses(lambda count, at: pulses.append(count))
    for us in steps:
        many_clock.advance(us * US)
        many.values()
    one_clock.set(many_clock.now())
    assert one.values() == many.values()
    assert one.telegram() == many.telegram()
    assert one.energy_kwh == many.energy_kwh
    assert (one.tariff_kwh(1), one.tariff_kwh(2)) == (many.tariff_kwh(1), many.tariff_kwh(2))
    assert one.hours == many.hours
    assert one.pulses_out == many.pulses_out == sum(pulses)


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.integers(0, 20 * 3600 * 10**6), min_size=1, max_size=10),
    start=st.sampled_from(
        [datetime(2026, 3, 28, 19, 7, tzinfo=UTC), datetime(2026, 10, 24, 21, 59, tzinfo=UTC)]
    ),
    period=st.sampled_from([timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=2)]),
)
def test_many_small_steps_over_daylight_saving_changes(
    steps: list[int], start: datetime, period: timedelta
) -> None:
    cph = ZoneInfo("Europe/Copenhagen")
    setup = replace(ZERO, zone=cph, demand_period=period)
    schedule = TariffSchedule.parse("01:30-02:30,21:00-06:00", zone=cph)
    one, one_clock = meter(
        HouseholdLoad(1, zone=cph), start=start, settings=setup, schedule=schedule
    )
    many, many_clock = meter(
        HouseholdLoad(1, zone=cph), start=start, settings=setup, schedule=schedule
    )
    for us in steps:
        many_clock.advance(us * US)
        many.values()
    one_clock.set(many_clock.now())
    assert one.values() == many.values()
    assert (one.tariff_kwh(1), one.tariff_kwh(2)) == (many.tariff_kwh(1), many.tariff_kwh(2))


def test_a_period_cut_by_a_long_day_is_averaged_over_its_length() -> None:
    """25-hour day in Copenhagen with 2-hour periods: the last period lasts one hour."""
    cph = ZoneInfo("Europe/Copenhagen")
    setup = replace(ZERO, zone=cph, demand_period=timedelta(hours=2))
    local_midnight = datetime(2026, 10, 24, 22, tzinfo=UTC)  # 2026-10-25 00:00 CEST
    model, clock = meter(ConstantLoad(1), start=local_midnight, settings=setup)
    clock.set(local_midnight + timedelta(hours=24))  # the last period: 24 h to 25 h
    assert model.values().actual_peak == Decimal("1.0")
    model.load = ConstantLoad(4)
    clock.advance(timedelta(minutes=59))
    assert model.values().actual_peak == Decimal("1.0")
    clock.advance(MINUTE)  # local midnight again, one hour on: 4 kWh in 1 h
    assert model.values().actual_peak == Decimal("4.0")


@settings(max_examples=30, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2 * 24 * 3600 * 10**6), st.booleans()), min_size=1, max_size=10
    )
)
def test_manual_tariff_input_steps(steps: list[tuple[int, bool]]) -> None:
    """The input's energy split equals the constant load times the time spent in each state."""
    model, clock = meter(ConstantLoad("1.5"), settings=ZERO)
    expected = {1: Fraction(0), 2: Fraction(0)}
    for us, shorted in steps:
        clock.advance(us * US)
        expected[2 if model.tariff_input else 1] += Fraction(3, 2) * Fraction(us, 3_600_000_000)
        model.tariff_input = shorted
    assert model.tariff_kwh(1) == expected[1]
    assert model.tariff_kwh(2) == expected[2]


# -- threads and clocks -------------------------------------------------------------------------


def test_readers_in_other_threads_see_consistent_states() -> None:
    model, clock = meter(HouseholdLoad(seed=3), settings=ZERO, schedule="22:00-06:00")
    pulses: list[int] = []
    model.subscribe_pulses(lambda count, at: pulses.append(count))
    stop = threading.Event()
    started = threading.Barrier(4)
    errors: list[BaseException] = []
    seen: list[list[MeterValues]] = [[] for _ in range(3)]

    def read(mine: list[MeterValues]) -> None:
        try:
            mine.append(model.values())
            started.wait()
            while not stop.is_set():
                values = model.values()
                assert values.energy - values.tariff_1 - values.tariff_2 in (0, 1)
                assert values.energy >= mine[-1].energy
                assert values.hour_counter >= mine[-1].hour_counter
                mine.append(values)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    readers = [threading.Thread(target=read, args=(mine,)) for mine in seen]
    for r in readers:
        r.start()
    started.wait()
    for _ in range(300):
        clock.advance(timedelta(minutes=37))
    stop.set()
    for r in readers:
        r.join()
    assert not errors
    final = model.values()
    assert all(v.energy <= final.energy for mine in seen for v in mine)
    assert sum(pulses) == model.pulses_out == math.floor(model.consumed_kwh * 1000)


def test_a_clock_going_back_is_ignored() -> None:
    class Wobbly:
        def __init__(self) -> None:
            self.at = T0

        def now(self) -> datetime:
            return self.at

        def real_seconds(self, virtual: timedelta) -> float:
            return virtual.total_seconds()

        async def sleep_until(self, when: datetime) -> None:
            raise NotImplementedError

    clock = Wobbly()
    model = MeterModel(ZERO, ConstantLoad(1), clock)
    clock.at = T0 + 2 * HOUR
    assert model.advance() == T0 + 2 * HOUR
    clock.at = T0 + HOUR
    assert model.advance() == T0 + 2 * HOUR
    assert model.energy_kwh == 2
    clock.at = T0 + 3 * HOUR
    assert model.energy_kwh == 3


def test_default_model_runs_on_the_system_clock() -> None:
    model = MeterModel()
    first = model.values()
    assert first.customer_number == "00054042"
    assert model.advance() <= datetime.now(UTC)
    assert isinstance(model.load, HouseholdLoad)
