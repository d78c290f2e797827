"""What the storage keeps of pin 3's pulses: per-minute power and each meter's live figure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = ["LivePower", "PowerMinute"]


@dataclass(frozen=True, slots=True)
class PowerMinute:
    """One minute of a meter's power from its pulses. ``minute``: its start (UTC, whole
    minute); ``pulses``: accepted in it; ``mean_w``: from that count (the energy of the minute
    over its 60 s); ``min_w`` / ``max_w``: the least and most of the interval estimates of its
    pulses (``None`` when no pulse gave an interval in it)."""

    meter: str
    minute: datetime
    pulses: int
    mean_w: float
    min_w: float | None = None
    max_w: float | None = None


@dataclass(frozen=True, slots=True)
class LivePower:
    """A meter's newest power figure as the collector last wrote it (once a second at most):
    ``at`` when, ``watts`` (``None`` before two pulses), ``energy_kwh`` (the register plus the
    pulses since; ``None`` before a readout), ``pulses`` accepted since the collector started,
    ``connected``: the pulse source delivered then."""

    meter: str
    at: datetime
    watts: float | None
    energy_kwh: Decimal | None
    pulses: int
    connected: bool
