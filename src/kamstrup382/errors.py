"""One error hierarchy for the whole package, split by who is at fault.

- :class:`ProtocolError`: the meter (or the line) delivered bytes that break the protocol:
  parity, block check character, framing, identification, type number, or a telegram that
  passes all of those but holds what the meter cannot have sent (implausible).
- :class:`LineError`: the transport failed: a timeout (with the phase it happened in) or a lost
  connection.
- :class:`UsageError`: the caller or the configuration is wrong.

Errors of the libraries below (pyserial, sockets, sqlite3, psycopg, ...) are translated into
these at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "BccError",
    "ConfigError",
    "ConnectionLost",
    "CrcError",
    "FramingError",
    "IdentificationError",
    "ImplausibleError",
    "Kamstrup382Error",
    "LineError",
    "ParityError",
    "ProtocolError",
    "ReadTimeout",
    "StorageError",
    "StuffingError",
    "TypeNumberError",
    "UnknownCommandError",
    "UsageError",
]


class Kamstrup382Error(Exception):
    """Root of every error this package raises on purpose.

    ``kind`` is a short name of the error's family, for one-line reports (``error: bcc: ...``).
    ``attempts`` is set by a reader on the error it finally raises: how many attempts it made
    before giving up (``None`` where no reader was involved).
    """

    kind = "error"
    attempts: int | None = None


class ProtocolError(Kamstrup382Error):
    """The bytes received break the protocol.

    ``offset`` is the 0-based position of the offending byte in the stream fed to the decoder
    (``None`` when the error is not tied to one byte); ``line`` the 1-based line of the reply.
    """

    kind = "protocol"

    def __init__(self, message: str, *, offset: int | None = None, line: int | None = None) -> None:
        self.detail = message
        self.offset = offset
        self.line = line
        where = []
        if offset is not None:
            where.append(f"byte {offset}")
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{message} (at {', '.join(where)})" if where else message)


class ParityError(ProtocolError):
    """A byte received in 8-bit form does not carry even parity."""

    kind = "parity"


class BccError(ProtocolError):
    """The block check character does not match the data block.

    Carries the value received and what both algorithms compute over the block, so that a
    user can tell a corrupted telegram from a meter that uses the other algorithm.
    """

    kind = "bcc"

    def __init__(
        self, message: str, *, received: int, sum7: int, xor: int, offset: int | None = None
    ) -> None:
        self.received = received
        self.sum7 = sum7
        self.xor = xor
        super().__init__(message, offset=offset)


class FramingError(ProtocolError):
    """Missing or misplaced STX, ETX, end marker, line end, or a data line that does not parse."""

    kind = "framing"


class CrcError(ProtocolError):
    """A KMP frame's CRC-16 does not match its bytes.

    ``received`` is the CRC the frame carries, ``computed`` what its address, command and data
    give (both 16-bit); ``offset`` the position of the frame's stop byte, where it is checked.
    """

    kind = "crc"

    def __init__(
        self, message: str, *, received: int, computed: int, offset: int | None = None
    ) -> None:
        self.received = received
        self.computed = computed
        super().__init__(message, offset=offset)


class StuffingError(FramingError):
    """A KMP frame's byte stuffing is broken: an escape (``0x1B``) at the end of the frame or
    before a byte that stands for no reserved byte, or a reserved byte sent unescaped."""

    kind = "stuffing"


class UnknownCommandError(ProtocolError):
    """A KMP frame carries a command id this package does not know (``cid``)."""

    kind = "command"

    def __init__(self, message: str, *, cid: int, offset: int | None = None) -> None:
        self.cid = cid
        super().__init__(message, offset=offset)


class IdentificationError(ProtocolError):
    """The identification line (``/XXXZ<text>``) is malformed."""

    kind = "identification"


class TypeNumberError(IdentificationError):
    """A Kamstrup 382 type number ``685-X3X2X1-Y2Y1-Z2Z1`` holds a value outside the spec."""

    kind = "type_number"


class ImplausibleError(ProtocolError):
    """A telegram that passed the block check holds what the meter cannot have sent.

    Damage the BCC cannot see (a character doubled in one register and dropped in another,
    two digits swapped) breaks what the meter guarantees: the width it prints, energy =
    tariff 1 + tariff 2, peaks within its maximum power, counters that only grow at a bounded
    rate (see :mod:`kamstrup382.protocol.plausibility`). ``rule`` names the rule broken
    (``width``, ``unit``, ``missing``, ``duplicate``, ``sum``, ``peak``, ``counter_down``,
    ``counter_rate``, ``hours_rate``, ``customer``, ``last_month_peak``, ``peak_down``),
    ``register`` the register's code as printed (``1.20.2``; ``None`` for a rule over
    several) and ``raw`` the reply's bytes, for the audit (the reader fills it). A protocol
    error: retried like a BCC error.
    """

    kind = "implausible"

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        register: str | None = None,
        raw: bytes | None = None,
        offset: int | None = None,
        line: int | None = None,
    ) -> None:
        self.rule = rule
        self.register = register
        self.raw = raw
        super().__init__(message, offset=offset, line=line)


class LineError(Kamstrup382Error):
    """The transport failed."""

    kind = "line"


class ReadTimeout(LineError):
    """Nothing (or not enough) arrived in time.

    ``phase`` says where: ``"answer"`` (no first byte inside the answer window),
    ``"inter_character"`` (the reply stopped mid-way), ``"deadline"`` (the whole readout took
    longer than allowed).
    """

    kind = "timeout"

    def __init__(self, message: str, *, phase: str, received: int = 0) -> None:
        self.phase = phase
        self.received = received
        super().__init__(f"{message} (phase {phase}, {received} bytes received)")


class ConnectionLost(LineError):
    """The port or socket closed or failed."""

    kind = "connection"


class UsageError(Kamstrup382Error, ValueError):
    """The caller passed something that cannot be used."""

    kind = "usage"


class ConfigError(UsageError):
    """A configuration value is wrong; ``key`` names it (dotted path, e.g. ``meters[2].port``)."""

    kind = "config"

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class StorageError(Kamstrup382Error):
    """The storage backend failed (translated from sqlite3 or psycopg)."""

    kind = "storage"
