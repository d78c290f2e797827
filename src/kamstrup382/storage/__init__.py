"""Storage of readings: one interface, SQLite (default) and PostgreSQL backends."""

from kamstrup382.storage.base import OutboxItem, Storage
from kamstrup382.storage.records import (
    AttemptRecord,
    ConsumptionRow,
    FailureRecord,
    MeterStatus,
    ReadingRecord,
)

__all__ = [
    "AttemptRecord",
    "ConsumptionRow",
    "FailureRecord",
    "MeterStatus",
    "OutboxItem",
    "ReadingRecord",
    "Storage",
]
