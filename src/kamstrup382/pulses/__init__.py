"""The module side of pin 3: pulse sources and the live power estimated from them."""

from __future__ import annotations

from kamstrup382.pulses.estimate import DEFAULT_CONSTANT, Power, PowerEstimate, Resync

__all__ = ["DEFAULT_CONSTANT", "Power", "PowerEstimate", "Resync"]
