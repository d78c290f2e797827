"""Storage of readings: one interface, SQLite (default) and PostgreSQL backends."""

from kamstrup382.storage.base import MQTT_QUEUE, OUTBOX_LEASE, OutboxItem, Storage
from kamstrup382.storage.power_records import LivePower, PowerMinute
from kamstrup382.storage.records import (
    MISSED,
    AnyReading,
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    KmpReadingRecord,
    MeterStatus,
    ReadingRecord,
)

__all__ = [
    "MISSED",
    "MQTT_QUEUE",
    "OUTBOX_LEASE",
    "AnyReading",
    "AttemptRecord",
    "ConsumptionRow",
    "FailureRecord",
    "KmpReadingRecord",
    "LivePower",
    "MeterStatus",
    "OutboxItem",
    "PowerMinute",
    "ReadingRecord",
    "Storage",
]
