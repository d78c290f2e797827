"""What a new configuration changes for a running collector (SIGHUP), as data.

A running collector takes the meters of a new configuration at once: meters added are read
from their next slot (the current one, if it is still running), meters removed are no longer
read once their readouts in flight have finished, and a meter whose settings changed is read
with the new ones from its next readout. The other tables (``[storage]``, the collector's own
settings, the outputs) and a meter's pulse input and tariff output are built into objects
that live as long as the process: a change there is named, and applied by a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kamstrup382.collector.config import CollectorConfig, Config, MeterConfig

__all__ = ["ConfigChange", "compare"]


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """The difference between the running configuration and a new one."""

    added: tuple[MeterConfig, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    #: Tables that differ but are applied only by a restart (``storage``, ``collector``, ...).
    restart: tuple[str, ...]

    @property
    def meters_changed(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        """One line for the log: what the reload does."""
        parts = []
        for label, names in (
            ("added", [m.name for m in self.added]),
            ("removed", list(self.removed)),
            ("changed", list(self.changed)),
        ):
            if names:
                shown = ", ".join(sorted(names)[:10]) + (", ..." if len(names) > 10 else "")
                parts.append(f"{label} {len(names)} ({shown})")
        return "; ".join(parts) if parts else "no meter changed"


def _collector_settings(config: Config) -> CollectorConfig:
    # the defaults a meter inherits (interval, jitter, timing, retries) reach the collector
    # through its meters; compare the rest
    defaults = CollectorConfig()
    return replace(
        config.collector,
        interval=defaults.interval,
        jitter=defaults.jitter,
        timing=defaults.timing,
        retry=defaults.retry,
    )


def _module(meter: MeterConfig | None) -> tuple[object, object]:
    """What of ``meter`` the module side runs (its pulse input and tariff output)."""
    if meter is None:
        return (None, None)
    return (meter.pulses, meter.tariff)


def compare(running: Config, new: Config) -> ConfigChange:
    """What taking ``new`` in place of ``running`` changes (meters by name)."""
    old = {m.name: m for m in running.meters}
    fresh = {m.name: m for m in new.meters}
    added = tuple(m for name, m in fresh.items() if name not in old)
    removed = tuple(name for name in old if name not in fresh)
    changed = tuple(name for name, m in fresh.items() if name in old and old[name] != m)
    restart = []
    # a pulse input (pin 3) or a tariff output (pin 4) runs as long as the collector
    modules = sorted(
        name for name in set(old) | set(fresh) if _module(old.get(name)) != _module(fresh.get(name))
    )
    if modules:
        restart.append(f"meters' pulses or tariff_output ({', '.join(modules)})")
    if running.storage != new.storage:
        restart.append("storage")
    if _collector_settings(running) != _collector_settings(new):
        restart.append("collector")
    if running.http != new.http:
        restart.append("http")
    for table in sorted(set(running.sections) | set(new.sections)):
        if running.sections.get(table) != new.sections.get(table):
            restart.append(table)
    return ConfigChange(added, removed, changed, tuple(restart))
