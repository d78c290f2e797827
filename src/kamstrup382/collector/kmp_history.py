"""What the collector remembers of each KMP meter, and how its next reading is judged.

The mode A history (:mod:`.history`) confirms values by hearing them in several telegrams,
because a 7-bit sum misses swapped digits. A KMP reply carries a CRC-16 per frame, which sees
such damage: here a reading is judged once, by the rules of
:mod:`kamstrup382.protocol.kmp.plausibility` (units converted exactly, nothing negative, the
high-resolution energy agreeing with the whole one) and against the meter's last accepted
reading (counters never down, never faster than the maximum power allows). A broken rule is an
:class:`~kamstrup382.errors.ImplausibleError`: the reader reads again within its retries, and a
readout that stays implausible is stored as a failure, never as a reading.

A meter is known by its serial number (GetSerialNo, asked in every readout): a reading with
another serial is another meter on the port (a replaced meter; a CRC-checked serial is not
damage). It is accepted with a warning, and becomes the history from then on.

The history is loaded from each meter's last stored KMP reading at start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from kamstrup382.errors import ImplausibleError
from kamstrup382.protocol.kmp.plausibility import check_kmp_history, kmp_values
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.storage import KmpReadingRecord

__all__ = ["KmpAccepted", "KmpHistory", "KmpJudge"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KmpAccepted:
    """A KMP meter's reading as accepted: its values by name (in the table's units), when it
    was read, and the meter that sent it."""

    values: Mapping[str, Decimal]
    at: datetime
    meter_type: int
    software_revision: str
    serial: int


class KmpHistory:
    """Per KMP meter, the last reading accepted."""

    def __init__(self) -> None:
        self._last: dict[str, KmpAccepted] = {}

    def __len__(self) -> int:
        return len(self._last)

    def last(self, meter: str) -> KmpAccepted | None:
        return self._last.get(meter)

    def load(self, records: Iterable[KmpReadingRecord]) -> None:
        """The meters' last stored readings (at start)."""
        for record in records:
            self._last[record.meter] = KmpAccepted(
                dict(record.values),
                record.read_at,
                record.meter_type,
                record.software_revision,
                record.serial,
            )

    def forget(self, meters: Iterable[str]) -> None:
        for meter in meters:
            self._last.pop(meter, None)

    def accepted(self, meter: str, accepted: KmpAccepted) -> None:
        self._last[meter] = accepted

    def judge(self, meter: str, read_at: Callable[[KmpReading], datetime]) -> KmpJudge:
        """The ``accept`` hook of one readout of ``meter``; ``read_at`` gives a reading's
        time (the collector's clock)."""
        return KmpJudge(meter, self._last.get(meter), read_at)


class KmpJudge:
    """Judges the readings of one readout (the reader's ``accept``); :attr:`accepted` is the
    one it accepted."""

    def __init__(
        self,
        meter: str,
        last: KmpAccepted | None,
        read_at: Callable[[KmpReading], datetime],
    ) -> None:
        self.meter = meter
        self.last = last
        self.read_at = read_at
        self.accepted: KmpAccepted | None = None

    def __call__(self, reading: KmpReading) -> None:
        if reading.meter_type is None or reading.serial is None:
            raise ImplausibleError(
                "KMP reading without the meter's type and serial (read with identify=True)",
                rule="identity",
            )
        values = kmp_values(reading.registers, reading.duration)
        at = self.read_at(reading)
        last = self.last
        if last is not None and last.serial != reading.serial:
            log.warning(
                "meter %s: serial number %d where %d was read before: another meter on its "
                "port, taken as a replacement",
                self.meter,
                reading.serial,
                last.serial,
            )
        elif last is not None:
            check_kmp_history(last.values, values, (at - last.at).total_seconds())
        self.accepted = KmpAccepted(
            values, at, reading.meter_type, reading.software_revision or "", reading.serial
        )
