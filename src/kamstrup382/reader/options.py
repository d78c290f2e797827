"""The options both readers take, checked once: port, line mode, BCC mode, timing, retries,
the largest reply, the meter's dialect and what an earlier reader learned of its BCC."""

from __future__ import annotations

from dataclasses import dataclass

from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.protocol import BccAlgorithm, BccMode, Dialect
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY
from kamstrup382.reader.bcc_memory import BccMemory
from kamstrup382.reader.policy import EXPECTED_REPLY_SIZE, RetryPolicy, Timing
from kamstrup382.reader.port import LineMode, PortSpec, check_line, default_line, parse_port
from kamstrup382.reader.session import Session

__all__ = ["MAX_MAX_REPLY", "MIN_MAX_REPLY", "ReaderOptions", "with_attempts"]

#: The smallest ``max_reply`` a reader takes: a Kamstrup 382's reply (167 bytes, every register
#: at its fixed width); less could never read one.
MIN_MAX_REPLY = EXPECTED_REPLY_SIZE
#: The largest ``max_reply`` a reader takes: 64 KiB, far above any meter of this family's
#: reply, and still a bound on what a misbehaving gateway can make a reader keep per link.
MAX_MAX_REPLY = 65536


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    spec: PortSpec
    line: LineMode
    bcc: BccMode
    timing: Timing
    retry: RetryPolicy
    baudrate: int
    connect_timeout: float
    bcc_hint: BccAlgorithm | None = None
    bcc_memory: BccMemory | None = None
    max_reply: int = DEFAULT_MAX_REPLY
    dialect: Dialect | None = None
    #: 2 for an 8N2 line (KMP on MULTICAL, some heads); a serial device or pyserial URL only
    stop_bits: int = 1

    @classmethod
    def build(
        cls,
        port: str,
        *,
        line: LineMode | str | None,
        bcc: BccMode | str,
        retries: int,
        backoff: float,
        max_backoff: float,
        answer_timeout: float,
        answer_margin: float,
        inter_character: float | None,
        deadline: float | None,
        baudrate: int,
        timing: Timing | None,
        connect_timeout: float,
        retry: RetryPolicy | None = None,
        bcc_hint: BccAlgorithm | str | None = None,
        bcc_memory: BccMemory | None = None,
        max_reply: int = DEFAULT_MAX_REPLY,
        dialect: Dialect | None = None,
    ) -> ReaderOptions:
        spec = parse_port(port)
        try:
            line_mode = default_line(spec) if line is None else LineMode(line)
        except ValueError as exc:
            raise UsageError(f"line must be 7E1, 8N1 or auto, got {line!r}") from exc
        check_line(line_mode, spec)
        try:
            bcc_mode = BccMode(bcc)
        except ValueError as exc:
            raise UsageError(f"bcc must be auto, sum7 or xor, got {bcc!r}") from exc
        if timing is None:
            timing = Timing(
                baudrate=baudrate,
                answer_timeout=answer_timeout,
                answer_margin=answer_margin,
                inter_character=inter_character,
                deadline=deadline,
            )
        try:
            hint = None if bcc_hint is None else BccAlgorithm(bcc_hint)
        except ValueError as exc:
            raise UsageError(f"bcc_hint must be sum7 or xor, got {bcc_hint!r}") from exc
        if bcc_memory is not None and not isinstance(bcc_memory, BccMemory):
            raise UsageError(f"bcc_memory must be a BccMemory, got {bcc_memory!r}")
        if dialect is not None and not isinstance(dialect, Dialect):
            raise UsageError(f"dialect must be a Dialect or None, got {dialect!r}")
        if (
            not isinstance(max_reply, int)
            or isinstance(max_reply, bool)
            or not MIN_MAX_REPLY <= max_reply <= MAX_MAX_REPLY
        ):
            raise UsageError(
                f"max_reply must be a whole number of bytes from {MIN_MAX_REPLY} to "
                f"{MAX_MAX_REPLY}, got {max_reply!r}"
            )
        if not connect_timeout > 0:
            raise UsageError(f"connect_timeout must be positive, got {connect_timeout!r}")
        return cls(
            spec=spec,
            line=line_mode,
            bcc=bcc_mode,
            timing=timing,
            retry=(
                RetryPolicy(retries=retries, backoff=backoff, max_backoff=max_backoff)
                if retry is None
                else retry
            ),
            baudrate=baudrate,
            connect_timeout=connect_timeout,
            bcc_hint=hint,
            bcc_memory=bcc_memory,
            max_reply=max_reply,
            dialect=dialect,
        )

    def session(self) -> Session:
        return Session(
            line=self.line,
            bcc=self.bcc,
            timing=self.timing,
            retry=self.retry,
            bcc_hint=self.bcc_hint,
            bcc_memory=self.bcc_memory,
            max_reply=self.max_reply,
            dialect=self.dialect,
        )


def with_attempts(error: Kamstrup382Error, attempts: int) -> Kamstrup382Error:
    """``error`` carrying ``attempts`` (how many tries it took to give up), for callers that
    record it (the collector); also said in a note."""
    error.attempts = attempts
    error.add_note(f"after {attempts} attempt{'s' if attempts != 1 else ''}")
    return error
