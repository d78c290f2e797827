"""Test data for the web tests: a KMP meter's (a 382Jx3's) history as the collector stores it.

Built directly as :class:`~kamstrup382.storage.records.KmpReadingRecord` (the contract's way
without the collector), with the emulator's resolutions (``emulator/kmp_meter.py``): whole kWh
and 0.01 kWh, whole W and V, 0.01 A; the power split 50 / 30 / 20 % over the phases. The last
reading leaves ``voltage_l2`` and ``current_l2`` out of its answer, as a meter may: they are
absent from it, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from kamstrup382.storage.records import FailureRecord, KmpReadingRecord
from tests.web.history import START, STEP

__all__ = ["LEFT_OUT", "KmpHistory", "build_kmp_history"]

#: What the last reading of a history leaves out.
LEFT_OUT = ("voltage_l2", "current_l2")
_SHARES = (Decimal("0.5"), Decimal("0.3"), Decimal("0.2"))


@dataclass(frozen=True)
class KmpHistory:
    readings: list[KmpReadingRecord]
    failures: list[FailureRecord]


def _watts(at: datetime) -> Decimal:
    if 7 <= at.hour < 9 or 17 <= at.hour < 21:
        return Decimal(2400)
    return Decimal(400) if at.hour >= 22 or at.hour < 6 else Decimal(900)


def build_kmp_history(
    meter: str = "flat", *, start: datetime = START, slots: int = 4 * 24, fail_every: int = 13
) -> KmpHistory:
    """``slots`` quarter-hour KMP readouts from ``start``; every ``fail_every``-th one fails
    (a CRC error, as the collector records it)."""
    energy = Decimal("5120.00")
    readings: list[KmpReadingRecord] = []
    failures: list[FailureRecord] = []
    for i in range(slots):
        slot = start + i * STEP
        watts = _watts(slot) + i % 7
        energy += watts / 4000
        if fail_every and i % fail_every == fail_every - 1:
            failures.append(
                FailureRecord(
                    meter=meter,
                    slot=slot,
                    failed_at=slot + timedelta(seconds=1),
                    kind="crc",
                    message="KMP CRC 0x1234, computed 0x4321",
                    attempts=3,
                    duration=0.9,
                )
            )
            continue
        hires = energy.quantize(Decimal("0.01"), ROUND_FLOOR)
        values: dict[str, Decimal] = {
            "energy": hires.to_integral_value(ROUND_FLOOR),
            "energy_out": Decimal(0),
            "energy_hires": hires,
            "energy_out_hires": Decimal("0.00"),
            "power": watts,
            "power_out": Decimal(0),
            "max_power": Decimal(2406),
        }
        for n, share in enumerate(_SHARES, 1):
            phase = (watts * share).to_integral_value(ROUND_FLOOR)
            volts = Decimal(230) - (phase / 2500).to_integral_value(ROUND_FLOOR)
            values[f"voltage_l{n}"] = volts
            values[f"current_l{n}"] = (phase / volts).quantize(Decimal("0.01"), ROUND_FLOOR)
            values[f"power_l{n}"] = phase
        if i == slots - 1:
            for name in LEFT_OUT:
                del values[name]
        readings.append(
            KmpReadingRecord(
                meter=meter,
                slot=slot,
                read_at=slot + timedelta(seconds=1, milliseconds=i % 5),
                meter_type=0x0382,
                software_revision="A1",
                serial=4711,
                values=values,
                duration=0.2 + (i % 3) / 100,
                exchanges=2,
                attempts=2 + (i % 9 == 0),
            )
        )
    return KmpHistory(readings, failures)
