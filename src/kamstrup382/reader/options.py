"""The options both readers take, checked once: port, line mode, BCC mode, timing, retries."""

from __future__ import annotations

from dataclasses import dataclass

from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.protocol import BccAlgorithm, BccMode
from kamstrup382.reader.policy import RetryPolicy, Timing
from kamstrup382.reader.port import LineMode, PortSpec, default_line, parse_port
from kamstrup382.reader.session import Session

__all__ = ["ReaderOptions", "with_attempts"]


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
    ) -> ReaderOptions:
        spec = parse_port(port)
        try:
            line_mode = default_line(spec) if line is None else LineMode(line)
        except ValueError as exc:
            raise UsageError(f"line must be 7E1 or 8N1, got {line!r}") from exc
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
        )

    def session(self) -> Session:
        return Session(
            line=self.line,
            bcc=self.bcc,
            timing=self.timing,
            retry=self.retry,
            bcc_hint=self.bcc_hint,
        )


def with_attempts(error: Kamstrup382Error, attempts: int) -> Kamstrup382Error:
    """``error`` carrying ``attempts`` (how many tries it took to give up), for callers that
    record it (the collector); also said in a note."""
    error.attempts = attempts
    error.add_note(f"after {attempts} attempt{'s' if attempts != 1 else ''}")
    return error
