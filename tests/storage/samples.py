"""Records for the storage tests: readings as a meter would give them, and failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kamstrup382.protocol import MeterValues
from kamstrup382.storage import FailureRecord, KmpReadingRecord, ReadingRecord

__all__ = ["START", "STEP", "failure", "kmp_reading", "reading"]

START = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)


def reading(
    meter: str = "house",
    index: int = 0,
    *,
    energy: int | None = None,
    tariff_1: int | None = None,
    tariff_2: int | None = None,
    peak: str = "12.3",
    type_number: str | None = "685-382-OK-15",
) -> ReadingRecord:
    """The ``index``-th quarter-hour reading of ``meter`` (registers grow with ``index``)."""
    slot = START + index * STEP
    t1 = 1000 + 2 * index if tariff_1 is None else tariff_1
    t2 = 500 + index if tariff_2 is None else tariff_2
    values = MeterValues(
        customer_number="00012345",
        energy=Decimal((t1 + t2) % 10**7 if energy is None else energy),
        tariff_1=Decimal(t1),
        tariff_2=Decimal(t2),
        hour_counter=Decimal(index // 4),
        pulse_input=Decimal(index * 7 % 10**7),
        actual_peak=Decimal(peak),
        last_month_peak=Decimal("999999.9"),
    )
    return ReadingRecord(
        meter=meter,
        slot=slot,
        read_at=slot + timedelta(seconds=1, microseconds=index % 1000),
        values=values,
        identification="KAM 685-382-OK-15" if type_number else "ABC5 other meter",
        type_number=type_number,
        bcc_algorithm="sum7",
        raw=b"/KAM5 685-382-OK-15\r\n\x021.20(0001234*kWh)\r\n!\r\n\x03" + bytes([index % 128]),
        answer_delay=0.0375 + index / 1e6,
        duration=4.125 + index / 1e3,
        attempts=1 + index % 3,
    )


def failure(meter: str = "house", index: int = 0, kind: str = "timeout") -> FailureRecord:
    slot = START + index * STEP
    return FailureRecord(
        meter=meter,
        slot=slot,
        failed_at=slot + timedelta(seconds=2),
        kind=kind,
        message=f"no answer from {meter} (phase answer, 0 bytes received)",
        attempts=3,
        duration=1.8,
    )


def kmp_reading(
    meter: str = "flat",
    index: int = 0,
    *,
    energy: str | None = None,
    leave_out: tuple[str, ...] = ("energy_out_hires",),
) -> KmpReadingRecord:
    """The ``index``-th quarter-hour KMP readout of ``meter`` (a 382Jx3): exact values with the
    digits a meter sends (a trailing zero kept), registers in ``leave_out`` not sent."""
    slot = START + index * STEP
    values = {
        "energy": Decimal(f"{12345 + index}.{index % 100:02d}" if energy is None else energy),
        "energy_out": Decimal("0.00"),
        "energy_hires": Decimal(f"{12345 + index}.{index % 100:02d}0"),
        "energy_out_hires": Decimal("17.250"),
        "power": Decimal(1000 + index),
        "power_out": Decimal(0),
        "max_power": Decimal("7350.5"),
        "voltage_l1": Decimal("230.1"),
        "voltage_l2": Decimal("229.0"),
        "voltage_l3": Decimal("231.7"),
        "current_l1": Decimal("1.23"),
        "current_l2": Decimal("0.00"),
        "current_l3": Decimal("12.005"),
        "power_l1": Decimal(283 + index),
        "power_l2": Decimal(0),
        "power_l3": Decimal("-2771.9"),
    }
    return KmpReadingRecord(
        meter=meter,
        slot=slot,
        read_at=slot + timedelta(seconds=2, microseconds=index % 1000),
        meter_type=0x0382,
        software_revision="A1",
        serial=5_098_765_432 + index,
        values={name: v for name, v in values.items() if name not in leave_out},
        duration=0.375 + index / 1e3,
        exchanges=2,
        attempts=2 + index % 2,
    )
