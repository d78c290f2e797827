"""Readers: the sync :class:`Reader` and the asyncio :class:`AsyncReader`, on one sans-IO core.

Both take a port (a serial device path, ``socket://host:port`` or ``rfc2217://host:port``),
send the mode A request, and return a :class:`~kamstrup382.reader.reading.Reading` the moment the
reply's BCC has arrived and checked and the telegram passed the meter's plausibility rules
(and the caller's ``accept`` check); on failure they retry with backoff and raise the last
typed error (:class:`~kamstrup382.errors.ReadTimeout` with its phase,
:class:`~kamstrup382.errors.ParityError`, :class:`~kamstrup382.errors.BccError`,
:class:`~kamstrup382.errors.ImplausibleError`, :class:`~kamstrup382.errors.FramingError`,
:class:`~kamstrup382.errors.ConnectionLost`), which carries ``attempts``. In ``auto`` mode,
:class:`BccMemory` is what a reader learned of the meter's BCC algorithm, for the next reader.

:func:`new_event_loop`: the event loop for programs that read many meters at once (uvloop
where it is installed), e.g. ``asyncio.Runner(loop_factory=new_event_loop)``.
"""

from kamstrup382.reader.aio import AsyncReader, new_event_loop
from kamstrup382.reader.bcc_memory import BccCertainty, BccMemory
from kamstrup382.reader.policy import EXPECTED_REPLY_SIZE, RetryPolicy, Timing
from kamstrup382.reader.port import LineMode, PortKind, PortSpec, default_line, parse_port
from kamstrup382.reader.reading import Reading
from kamstrup382.reader.session import Accept, Progress, Readout, Session
from kamstrup382.reader.sync import Reader

__all__ = [
    "EXPECTED_REPLY_SIZE",
    "Accept",
    "AsyncReader",
    "BccCertainty",
    "BccMemory",
    "LineMode",
    "PortKind",
    "PortSpec",
    "Progress",
    "Reader",
    "Reading",
    "Readout",
    "RetryPolicy",
    "Session",
    "Timing",
    "default_line",
    "new_event_loop",
    "parse_port",
]
