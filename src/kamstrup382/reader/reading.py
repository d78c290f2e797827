"""What a readout gives back: the checked telegram with where, how and when it was read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from kamstrup382.protocol import BccAlgorithm, Identification, MeterValues, Telegram
from kamstrup382.reader.bcc_memory import BccCertainty
from kamstrup382.reader.port import LineMode

__all__ = ["Reading"]


@dataclass(frozen=True, slots=True)
class Reading:
    """One successful readout.

    Wall-clock times are timezone-aware UTC; ``answer_delay`` (request sent to first byte) and
    ``duration`` (request sent to BCC received) are measured on the monotonic clock, in seconds.
    ``attempts`` counts the tries it took (1 when the first one succeeded).
    ``bcc_certainty``: how sure the BCC algorithm is, as the reader's session saw it
    (:class:`~kamstrup382.reader.bcc_memory.BccCertainty`; ``None`` for a reading not taken by
    a reader).
    """

    telegram: Telegram
    port: str
    line: LineMode
    requested_at: datetime
    first_byte_at: datetime
    done_at: datetime
    answer_delay: float
    duration: float
    attempts: int = 1
    bcc_certainty: BccCertainty | None = None

    @property
    def identification(self) -> Identification:
        return self.telegram.identification

    @property
    def registers(self) -> dict[str, Decimal | str]:
        return self.telegram.registers

    @property
    def bcc_algorithm(self) -> BccAlgorithm:
        return self.telegram.bcc_algorithm

    @property
    def raw(self) -> bytes:
        return self.telegram.raw

    def meter_values(self) -> MeterValues:
        return self.telegram.meter_values()
