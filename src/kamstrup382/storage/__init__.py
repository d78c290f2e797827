"""Storage of readings: one interface, SQLite (default) and PostgreSQL backends."""

from kamstrup382.storage.base import MQTT_QUEUE, OUTBOX_LEASE, OutboxItem, Storage
from kamstrup382.storage.power_records import LivePower, PowerMinute
from kamstrup382.storage.records import (
    MISSED,
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    MeterStatus,
    ReadingRecord,
)

__all__ = [
    "MISSED",
    "MQTT_QUEUE",
    "OUTBOX_LEASE",
    "AttemptRecord",
    "ConsumptionRow",
    "FailureRecord",
    "LivePower",
    "MeterStatus",
    "OutboxItem",
    "PowerMinute",
    "ReadingRecord",
    "Storage",
]
