"""The collector: read the configured meters on a wall-clock schedule and store every attempt."""

from kamstrup382.collector.config import (
    CollectorConfig,
    Config,
    MeterConfig,
    StorageConfig,
    load_config,
    parse_config,
)

__all__ = [
    "CollectorConfig",
    "Config",
    "MeterConfig",
    "StorageConfig",
    "load_config",
    "parse_config",
]
