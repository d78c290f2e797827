"""Which protocol a meter speaks: IEC 61107 mode A at 300 baud 7E1, else KMP at 9600 8N1,
then at 1200 8N2.

:func:`detect` tries each in that order, once (no retries), and stops at the first that
answers: a complete, checked mode A telegram (the :class:`~kamstrup382.reader.reading.Reading`
is kept, so the caller need not read again), or a checked KMP GetType reply. Each try is a
:class:`Probe` with its time and outcome, so that a user sees what was tried and how long each
took. On a ``socket://`` gateway the baud rate is the gateway's: KMP is tried once there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kamstrup382.errors import Kamstrup382Error, LineError, ProtocolError, ReadTimeout
from kamstrup382.protocol.kmp import TypeReply
from kamstrup382.reader.kmp_sync import KmpReader
from kamstrup382.reader.port import PortKind, parse_port
from kamstrup382.reader.reading import Reading
from kamstrup382.reader.sync import Reader

__all__ = ["KMP_LINES", "Detection", "Probe", "detect"]

#: The KMP lines tried, in order (baud, stop bits): the 382 family's optical port at 8N1,
#: then MULTICAL's 1200 8N2.
KMP_LINES: tuple[tuple[int, int], ...] = ((9600, 1), (1200, 2))


@dataclass(frozen=True, slots=True)
class Probe:
    protocol: str  # "iec" or "kmp"
    baud: int
    seconds: float
    outcome: str  # "answered", or the error's kind and message
    stop_bits: int = 1

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    def __str__(self) -> str:
        name = (
            "IEC 61107 mode A 300 7E1"
            if self.protocol == "iec"
            else f"KMP {self.baud} 8N{self.stop_bits}"
        )
        return f"{name}: {self.outcome} ({self.seconds:.3f} s)"


@dataclass(frozen=True, slots=True)
class Detection:
    protocol: str | None
    baud: int | None
    probes: tuple[Probe, ...]
    reading: Reading | None = None  # mode A: the telegram read while detecting
    kmp_type: TypeReply | None = None
    stop_bits: int = 1

    @property
    def summary(self) -> str:
        tried = "; ".join(str(p) for p in self.probes)
        if self.protocol is None:
            return f"no meter answered ({tried})"
        what = (
            "IEC 61107 mode A at 300 baud"
            if self.protocol == "iec"
            else f"KMP at {self.baud} baud 8N{self.stop_bits}"
        )
        if self.kmp_type is not None:
            what += (
                f" (meter type 0x{self.kmp_type.meter_type:04x}, "
                f"software {self.kmp_type.revision_text})"
            )
        return f"found {what} ({tried})"


def _outcome(error: Kamstrup382Error) -> str:
    return f"{error.kind}: {error}"


def detect(port: str, *, answer_margin: float = 0.3, connect_timeout: float = 5.0) -> Detection:
    """Try mode A, then KMP at each of :data:`KMP_BAUDS`; see the module docstring."""
    probes: list[Probe] = []
    started = time.monotonic()
    try:
        with Reader(
            port, retries=0, answer_margin=answer_margin, connect_timeout=connect_timeout
        ) as reader:
            reading = reader.read()
        probes.append(Probe("iec", 300, time.monotonic() - started, "answered"))
        return Detection("iec", 300, tuple(probes), reading=reading)
    except (ProtocolError, ReadTimeout) as error:
        probes.append(Probe("iec", 300, time.monotonic() - started, _outcome(error)))
    except LineError as error:  # the port itself failed: nothing else will work either
        probes.append(Probe("iec", 300, time.monotonic() - started, _outcome(error)))
        raise
    lines = KMP_LINES[:1] if parse_port(port).kind is PortKind.SOCKET else KMP_LINES
    for baud, stop_bits in lines:
        started = time.monotonic()
        try:
            with KmpReader(
                port,
                baud=baud,
                retries=0,
                answer_margin=answer_margin,
                connect_timeout=connect_timeout,
                stop_bits=stop_bits,
            ) as kmp:
                kind = kmp.identify()
            probes.append(Probe("kmp", baud, time.monotonic() - started, "answered", stop_bits))
            return Detection("kmp", baud, tuple(probes), kmp_type=kind, stop_bits=stop_bits)
        except (ProtocolError, ReadTimeout) as error:
            took = time.monotonic() - started
            probes.append(Probe("kmp", baud, took, _outcome(error), stop_bits))
    return Detection(None, None, tuple(probes))
