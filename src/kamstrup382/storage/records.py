"""What the storage keeps: one row per readout attempt, a success or a failure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from kamstrup382.protocol import MeterValues

__all__ = [
    "MISSED",
    "AnyReading",
    "AttemptRecord",
    "ConsumptionRow",
    "FailureRecord",
    "KmpReadingRecord",
    "MeterStatus",
    "ReadingRecord",
]

#: ``FailureRecord.kind`` of a meter the collector could not read in its slot at all (the
#: previous readout on its line ran past the slot's end, or the collector fell behind): no
#: attempt was made, ``attempts`` is 0.
MISSED = "missed"


@dataclass(frozen=True, slots=True)
class ReadingRecord:
    """A successful readout as stored.

    ``slot`` is the start of the scheduled interval the reading belongs to (UTC, aligned to the
    wall clock): (``meter``, ``slot``) is the key that makes writes idempotent. ``read_at`` is
    when the request was sent (UTC). ``identification`` is the identification line without its
    ``/`` and CR LF (``KAM 685-382-OK-15``); ``type_number`` the type number text when it is a
    382 (``685-382-OK-15``), else ``None``. ``raw`` is the whole reply, 7-bit, for audit.
    """

    protocol: ClassVar[str] = "iec"

    meter: str
    slot: datetime
    read_at: datetime
    values: MeterValues
    identification: str
    type_number: str | None
    bcc_algorithm: str
    raw: bytes
    answer_delay: float
    duration: float
    attempts: int


@dataclass(frozen=True, slots=True)
class KmpReadingRecord:
    """A successful KMP readout as stored (382J, 382Jx3, 382Lx7, 382M: :mod:`kamstrup382.
    protocol.kmp`).

    ``slot``/``read_at`` as for :class:`ReadingRecord`. ``values``: the registers the meter
    answered, by their name in :data:`~kamstrup382.protocol.kmp.KMP_REGISTER_BY_NAME`, each in
    that register's unit (``energy`` in kWh, ``power`` in W, ...), converted exactly from the
    unit byte of the reply (a register sent in a unit of another quantity is refused, never
    stored); a register the meter left out is absent. ``meter_type`` and
    ``software_revision`` (``A1``) are the meter's GetType answer, ``serial`` its GetSerialNo
    answer. ``exchanges``: the requests of the readout; ``attempts``: the exchanges tried,
    retries included. (Not hashable: ``values`` is a mapping.)
    """

    protocol: ClassVar[str] = "kmp"

    meter: str
    slot: datetime
    read_at: datetime
    meter_type: int
    software_revision: str
    serial: int
    values: Mapping[str, Decimal]
    duration: float
    exchanges: int
    attempts: int


#: A stored reading of either protocol: mode A (:class:`ReadingRecord`) or KMP.
AnyReading = ReadingRecord | KmpReadingRecord


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """A readout that failed after all its attempts.

    ``kind`` is the error's ``kind`` (``timeout``, ``parity``, ``bcc``, ``framing``,
    ``identification``, ``type_number``, ``implausible``, ``connection``, ...), ``message`` its
    text; or :data:`MISSED` for a meter not read in its slot (``attempts`` 0). ``raw``: the
    reply of the last attempt, 7-bit, where the failure has one to show (a complete telegram
    refused as ``implausible``: what the meter was heard to send, for the audit); else
    ``None``.
    """

    meter: str
    slot: datetime
    failed_at: datetime
    kind: str
    message: str
    attempts: int
    duration: float
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One row of the readout log: success or failure, for health plots."""

    meter: str
    slot: datetime
    at: datetime
    ok: bool
    duration: float
    attempts: int
    kind: str | None


@dataclass(frozen=True, slots=True)
class ConsumptionRow:
    """Energy consumed between two consecutive readings, correct across register wrap.

    ``start``/``end`` are the ``read_at`` of the two readings; the deltas are in kWh. The
    tariffs are ``None`` where one of the two readings is a KMP reading (the 382's KMP
    register set has no tariff registers): unknown, never 0.
    """

    meter: str
    start: datetime
    end: datetime
    energy: Decimal
    tariff_1: Decimal | None
    tariff_2: Decimal | None


@dataclass(frozen=True, slots=True)
class MeterStatus:
    meter: str
    last_success: datetime | None
    last_error: datetime | None
    last_error_kind: str | None
    last_error_message: str | None
    successes: int
    failures: int

    @property
    def success_rate(self) -> float | None:
        total = self.successes + self.failures
        return self.successes / total if total else None
