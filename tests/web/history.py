"""Test data for the web tests: a meter's history as the collector would store it.

Every reading is an encoded reply of the protocol core (``encode_reply``) decoded again
(``decode_reply``), so the stored records hold exactly what a meter would have sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kamstrup382.protocol import (
    BccMode,
    Identification,
    MeterValues,
    TypeNumber,
    decode_reply,
    encode_reply,
)
from kamstrup382.storage.records import FailureRecord, ReadingRecord

__all__ = ["History", "build_history"]

START = datetime(2026, 1, 30, tzinfo=UTC)
STEP = timedelta(minutes=15)


@dataclass(frozen=True)
class History:
    readings: list[ReadingRecord]
    failures: list[FailureRecord]
    sent: list[bytes]  # the replies, as sent, of the readings in order


def _night(at: datetime) -> bool:
    return at.hour >= 22 or at.hour < 6


def _power_kw(at: datetime) -> Decimal:
    """A household's demand: low at night, peaks in the morning and evening."""
    hour = at.hour
    if 7 <= hour < 9 or 17 <= hour < 21:
        return Decimal("2.4")
    if _night(at):
        return Decimal("0.4")
    return Decimal("0.9")


def build_history(
    meter: str = "house",
    *,
    start: datetime = START,
    slots: int = 4 * 24 * 4,
    fail_every: int = 17,
    type_number: TypeNumber | None = None,
) -> History:
    """``slots`` quarter-hour readouts from ``start``; every ``fail_every``-th one fails."""
    ident = Identification.for_type_number(type_number or TypeNumber())
    energy = Decimal("1234.000")
    t1 = Decimal("1000.000")
    t2 = Decimal("234.000")
    peak = Decimal("0.0")
    last_peak = Decimal("3.1")
    readings: list[ReadingRecord] = []
    failures: list[FailureRecord] = []
    sent: list[bytes] = []
    for i in range(slots):
        slot = start + i * STEP
        if i and slot.day == 1 and slot.hour == 0 and slot.minute == 0:
            last_peak, peak = peak, Decimal("0.0")
        kw = _power_kw(slot)
        used = kw * Decimal("0.25")
        energy += used
        if _night(slot):
            t2 += used
        else:
            t1 += used
        peak = max(peak, kw)
        if fail_every and i % fail_every == fail_every - 1:
            failures.append(
                FailureRecord(
                    meter=meter,
                    slot=slot,
                    failed_at=slot + timedelta(seconds=3),
                    kind="timeout",
                    message="no answer (phase answer, 0 bytes received)",
                    attempts=3,
                    duration=2.4,
                )
            )
            continue
        values = MeterValues(
            customer_number="00012345",
            energy=Decimal(int(energy)),
            tariff_1=Decimal(int(t1)),
            tariff_2=Decimal(int(t2)),
            hour_counter=Decimal(int((slot - start).total_seconds() // 3600) + 8000),
            pulse_input=Decimal(i),
            actual_peak=peak,
            last_month_peak=last_peak,
        )
        reply = encode_reply(ident, values)
        telegram = decode_reply(reply, bcc=BccMode.AUTO)
        sent.append(reply)
        readings.append(
            ReadingRecord(
                meter=meter,
                slot=slot,
                read_at=slot + timedelta(seconds=1, milliseconds=i % 7),
                values=telegram.meter_values(),
                identification=str(telegram.identification)[1:],
                type_number=(
                    str(telegram.identification.type_number)
                    if telegram.identification.type_number
                    else None
                ),
                bcc_algorithm=telegram.bcc_algorithm.value,
                raw=telegram.raw,
                answer_delay=0.05 + (i % 5) * 0.01,
                duration=3.6 + (i % 3) * 0.1,
                attempts=1 + (i % 11 == 0),
            )
        )
    return History(readings, failures, sent)
