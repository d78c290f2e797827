"""The collector: read the configured meters on a wall-clock schedule and store every attempt.

``Collector`` and ``CycleResult`` are imported on first use, so that the config can be loaded
without the reader and storage layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kamstrup382.collector.config import (
    CollectorConfig,
    Config,
    MeterConfig,
    StorageConfig,
    load_config,
    parse_config,
)

if TYPE_CHECKING:
    from kamstrup382.collector.collector import Collector, CycleResult

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


def __getattr__(name: str) -> Any:
    if name in ("Collector", "CycleResult"):
        from kamstrup382.collector import collector  # noqa: PLC0415 - lazy on purpose

        return getattr(collector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
