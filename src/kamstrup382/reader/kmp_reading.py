"""A KMP reading: the registers one readout got, with where, when and how long it took."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from kamstrup382.protocol.kmp import RegisterValue

__all__ = ["KmpReading"]


@dataclass(frozen=True, slots=True)
class KmpReading:
    """``registers`` in the order asked (those the meter left out are in ``missing``);
    ``duration`` from the first request's write to the last reply's stop byte, seconds.
    ``meter_type``, ``software_revision`` (``A1``) and ``serial``: what the meter said it is,
    where the readout asked (``identify``), else ``None``."""

    port: str
    baud: int
    requested_at: datetime
    duration: float
    registers: tuple[RegisterValue, ...]
    missing: tuple[int, ...]
    exchanges: int
    attempts: int
    received: int  # bytes received, echo included
    stop_bits: int = 1
    meter_type: int | None = None
    software_revision: str | None = None
    serial: int | None = None

    def values(self) -> dict[str, Decimal]:
        """The named registers' values (registers outside the 382 table by ``0xNNNN``)."""
        return {r.name or f"0x{r.id:04x}": r.value for r in self.registers}
