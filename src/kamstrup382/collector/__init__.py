"""The collector: read the configured meters on a wall-clock schedule and store every attempt.

Where each part lives: ``collector`` (the schedule), ``gate`` (requests written at one
instant), ``leases`` (meters shared through the storage), ``pool`` (the readers), ``records``
(what a readout becomes), ``writer`` (batched storage), ``runtime`` (process tuning), ``config``
(the TOML file). See docs/architecture.md.
"""

from __future__ import annotations

from kamstrup382.collector.collector import Collector
from kamstrup382.collector.config import (
    CollectorConfig,
    Config,
    MeterConfig,
    StorageConfig,
    load_config,
    parse_config,
)
from kamstrup382.collector.cycle import CycleResult

__all__ = [
    "Collector",
    "CollectorConfig",
    "Config",
    "CycleResult",
    "MeterConfig",
    "StorageConfig",
    "load_config",
    "parse_config",
]
