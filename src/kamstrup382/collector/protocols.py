"""What a ``protocol = "auto"`` meter speaks, found once and remembered.

The first readout of such a meter first runs :func:`kamstrup382.reader.detect.detect` on its
port (in a worker thread: it is the blocking reader's): IEC 61107 mode A at 300 baud 7E1, else
KMP at 9600 8N1, then at 1200 8N2 (not on a ``socket://`` gateway, whose line is its own). What
answered is logged with what each try took, and kept for every later readout (and, through the
storage, across restarts: :meth:`ProtocolFinder.load`). When nothing answers, the readout fails
with the detection's error (a ``timeout``, naming each try) and the next readout tries again.

A meter found once may change: another meter on its port (a 382 with the optical mode A head
replaced by a 382Lx7 speaking KMP), or a gateway set to another speed. What was found is then
asked and nothing answers: after :data:`SILENT_READOUTS` readouts in a row that each ended in a
timeout before the first byte (:meth:`ProtocolFinder.readout_ended`), the finding is forgotten,
here and in the storage, and the next readout detects again.

The finder knows the meters configured (:meth:`ProtocolFinder.configure`, at each reload): a
meter whose settings change, or that is removed, is forgotten (:meth:`ProtocolFinder.forget`)
and detected again at its next readout. What a detection finds is kept (and told to
``on_found``) only for a meter configured as it was read and only if the meter was not
forgotten while it ran (each meter has a generation, bumped by ``forget``); otherwise the
readout that ran it uses it alone (a readout of the old settings still in flight at a
reload). The lock a meter's readouts take turns on (one detection at a time) lives while a
readout holds or waits on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from kamstrup382.collector.config import MeterConfig
from kamstrup382.collector.kmp_config import KmpSettings, MeterProtocol
from kamstrup382.errors import ReadTimeout
from kamstrup382.reader.detect import KMP_LINES, detect

__all__ = ["SILENT_READOUTS", "Found", "OnFound", "ProtocolFinder", "from_stored", "stored"]

log = logging.getLogger(__name__)

#: Readouts in a row that heard nothing (a timeout before the first byte) after which what was
#: found for a meter is forgotten and the meter detected again.
SILENT_READOUTS = 3

#: What a meter was found to speak: ``("iec", None)`` or ``("kmp", (baud, stop_bits))``.
Found = tuple[str, tuple[int, int] | None]
#: Told what was found for a meter, to keep it (the collector stores it).
OnFound = Callable[[str, Found], Awaitable[None]]
_STOP_BITS = dict(KMP_LINES)


def stored(found: Found) -> tuple[str, int | None]:
    """``found`` as the storage keeps it (protocol, baud): KMP's stop bits follow from its
    baud rate (:data:`~kamstrup382.reader.detect.KMP_LINES`)."""
    protocol, line = found
    return protocol, None if line is None else line[0]


def from_stored(protocol: str, baud: int | None) -> Found | None:
    """What :func:`stored` kept, back (``None``: not something this version found)."""
    if protocol == "iec":
        return "iec", None
    if protocol == "kmp" and baud is not None:
        return "kmp", (baud, _STOP_BITS.get(baud, 1))
    return None


@dataclass(eq=False, slots=True)
class _Turns:
    """A meter's readouts in the finder now: the lock they take turns on (one detection at a
    time), how many hold or wait on it, and the meter's generation."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    generation: int = 0


class ProtocolFinder:
    """Per ``auto`` meter of ``meters`` (the configured ones), what it was found to speak (see
    the module docstring); ``on_found`` is told each finding (and must not raise for a storage
    error)."""

    def __init__(self, meters: Iterable[MeterConfig], on_found: OnFound | None = None) -> None:
        self.on_found = on_found
        self._meters = {m.name: m for m in meters}
        self._found: dict[str, Found] = {}
        #: Per meter with a finding, the readouts in a row that heard nothing (none: 0).
        self._silent: dict[str, int] = {}
        #: Only the meters a readout holds or waits on (freed by the last one out).
        self._turns: dict[str, _Turns] = {}

    def load(self, known: Mapping[str, tuple[str, int | None]]) -> None:
        """What earlier runs found, as the storage keeps it (:func:`stored`)."""
        for meter, (protocol, baud) in known.items():
            found = from_stored(protocol, baud)
            if found is not None:
                self._found[meter] = found

    def configure(self, meters: Iterable[MeterConfig]) -> None:
        """The meters configured from now on (a reload's): those removed or changed are
        forgotten (:meth:`forget`)."""
        fresh = {m.name: m for m in meters}
        self.forget([name for name, m in self._meters.items() if fresh.get(name) != m])
        self._meters = fresh

    def forget(self, meters: Iterable[str]) -> None:
        """What was found for ``meters`` (removed, or their settings changed): each is
        detected again at its next readout, and a detection still running for it is not kept."""
        for meter in meters:
            self._found.pop(meter, None)
            self._silent.pop(meter, None)
            turns = self._turns.get(meter)
            if turns is not None:
                turns.generation += 1

    def readout_ended(self, meter: str, error: BaseException | None) -> bool:
        """A readout of ``meter`` with what was found for it ended, with ``error`` or none.
        True when the finding is now forgotten: the readouts in a row that heard nothing
        (:class:`~kamstrup382.errors.ReadTimeout` before the first byte) reached
        :data:`SILENT_READOUTS`."""
        if meter not in self._found:
            return False
        heard_nothing = isinstance(error, ReadTimeout) and error.received == 0
        if not heard_nothing:
            self._silent.pop(meter, None)
            return False
        silent = self._silent.get(meter, 0) + 1
        if silent < SILENT_READOUTS:
            self._silent[meter] = silent
            return False
        protocol, line = self._found[meter]
        shown = protocol if line is None else f"{protocol} at {line[0]} baud"
        log.warning(
            "meter %s: auto: nothing answered %s in %d readouts in a row: detecting again",
            meter,
            shown,
            silent,
        )
        self.forget([meter])
        return True

    def busy(self) -> frozenset[str]:
        """The meters a readout holds or waits on the finder for now."""
        return frozenset(self._turns)

    def found(self, meter: str) -> Found | None:
        return self._found.get(meter)

    async def settings(self, meter: MeterConfig) -> KmpSettings | None:
        """How ``meter`` is read: its KMP settings, or ``None`` for mode A (``auto``: what was
        found for it, tried now the first time)."""
        if meter.protocol is MeterProtocol.AUTO:
            return await self.find(meter)
        return meter.kmp if meter.protocol is MeterProtocol.KMP else None

    async def find(self, meter: MeterConfig) -> KmpSettings | None:
        """``meter``'s KMP settings with the line found, or ``None`` for mode A; detected now
        if not known yet (:class:`~kamstrup382.errors.ReadTimeout` when nothing answers)."""
        turns = self._turns.get(meter.name) or self._turns.setdefault(meter.name, _Turns())
        turns.users += 1
        try:
            async with turns.lock:
                current = self._meters.get(meter.name) == meter
                known = self._found.get(meter.name) if current else None
                if known is None:
                    generation = turns.generation
                    known = await self._detect(meter)
                    if generation != turns.generation or self._meters.get(meter.name) != meter:
                        # removed or changed (by a reload) before or while detecting: this
                        # readout uses what it found, nothing is kept
                        log.debug("meter %s: auto: not kept (not configured so now)", meter.name)
                    else:
                        self._found[meter.name] = known
                        if self.on_found is not None:
                            await self.on_found(meter.name, known)
        finally:
            turns.users -= 1
            if not turns.users:
                del self._turns[meter.name]
        protocol, line = known
        if protocol != "kmp" or line is None:
            return None
        baud, stop_bits = line
        return replace(meter.kmp or KmpSettings(), baud=baud, stop_bits=stop_bits)

    @staticmethod
    async def _detect(meter: MeterConfig) -> Found:
        detection = await asyncio.to_thread(
            detect, meter.port, answer_margin=meter.timing.answer_margin
        )
        if detection.protocol is None:
            raise ReadTimeout(f"auto: {detection.summary}", phase="answer")
        log.info("meter %s: auto: %s", meter.name, detection.summary)
        if detection.protocol == "kmp" and detection.baud is not None:
            return "kmp", (detection.baud, detection.stop_bits)
        return "iec", None
