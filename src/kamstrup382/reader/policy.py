"""How long to wait and when to try again: timing from the specification and the baud rate.

All durations are in seconds. A character of the 7E1 line is 10 bits on the wire (start,
7 data, parity, stop), and so is an 8N1 byte: at 300 baud one character takes 33.3 ms.

- The answer window: the meter answers 20-600 ms after the request. The first byte of the
  identification must arrive within the request's own transmit time (a gateway may still be
  sending it when the write returns) + ``answer_timeout`` + ``answer_margin``.
- The inter-character timeout: once the reply has begun, each further byte must arrive within
  a few character times, never less than a floor that absorbs OS scheduling and gateway
  jitter, + ``answer_margin``.
- The deadline of one attempt: the answer window + the expected characters (request echo and
  reply) at the line's speed with 25 % slack + one inter-character timeout. A line that keeps
  delivering bytes that never make a telegram (noise) is cut off by it.

The margin is added to every phase: gateways (ser2net, ESP stream servers, WiFi) delay and
bunch characters on both ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from kamstrup382.errors import BccError, Kamstrup382Error, LineError, ProtocolError, UsageError
from kamstrup382.protocol import REQUEST

__all__ = [
    "BITS_PER_CHARACTER",
    "EXPECTED_REPLY_SIZE",
    "RetryPolicy",
    "Timing",
]

#: Start bit, 7 data bits, parity bit, stop bit (or 8 data bits and no parity: also 10).
BITS_PER_CHARACTER = 10
#: Bytes of a Kamstrup 382 reply, identification line to BCC (the specification's example).
EXPECTED_REPLY_SIZE = 167
#: Character times of silence inside a reply that end it as truncated.
INTER_CHARACTER_CHARS = 6
#: Never less than this for the inter-character timeout (OS and gateway jitter).
INTER_CHARACTER_FLOOR = 0.1
#: Slack on the expected transfer time in the deadline of one attempt.
DEADLINE_SLACK = 1.25


@dataclass(frozen=True, slots=True)
class Timing:
    """The timeouts of one readout attempt, derived from the spec and the baud rate."""

    baudrate: int = 300
    answer_timeout: float = 0.6
    answer_margin: float = 0.3
    inter_character: float | None = None  # None: derived from the baud rate
    deadline: float | None = None  # None: derived from the expected size

    def __post_init__(self) -> None:
        if not isinstance(self.baudrate, int) or self.baudrate <= 0:
            raise UsageError(f"baudrate must be a positive integer, got {self.baudrate!r}")
        for name in ("answer_timeout", "inter_character", "deadline"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UsageError(f"{name} must be positive, got {value!r}")
        if not self.answer_margin >= 0:
            raise UsageError(f"answer_margin must be >= 0, got {self.answer_margin!r}")

    @property
    def character_time(self) -> float:
        """Seconds one character takes on the wire."""
        return BITS_PER_CHARACTER / self.baudrate

    @property
    def request_time(self) -> float:
        return len(REQUEST) * self.character_time

    @property
    def answer_window(self) -> float:
        """Request sent to the first byte of the identification, at most."""
        return self.request_time + self.answer_timeout + self.answer_margin

    @property
    def inter_character_timeout(self) -> float:
        """Silence allowed between two bytes of the reply."""
        if self.inter_character is not None:
            return self.inter_character
        derived = INTER_CHARACTER_CHARS * self.character_time
        return max(derived, INTER_CHARACTER_FLOOR) + self.answer_margin

    def deadline_for(self, expected_size: int) -> float:
        """Request sent to BCC received, at most, for a reply of about ``expected_size`` bytes."""
        if self.deadline is not None:
            return self.deadline
        transfer = (expected_size + len(REQUEST)) * self.character_time * DEADLINE_SLACK
        return self.answer_window + transfer + self.inter_character_timeout

    def transfer_time(self, size: int) -> float:
        """Seconds ``size`` characters take on the wire."""
        return size * self.character_time


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff.

    ``retries`` extra attempts after the first; before retry *n* the reader waits
    ``backoff * 2**(n-1)``, at most ``max_backoff``. Retried: every :class:`LineError`
    (timeouts, a lost connection: reopened) and every :class:`ProtocolError` (a corrupted
    character, a truncated or garbled reply) -- a mode A meter cannot be asked to repeat a
    block, so the only remedy is a new request. Not retried: :class:`UsageError`, and a
    :class:`BccError` that is exactly the other algorithm's check character while the caller
    fixed the algorithm (a misconfigured reader: trying again cannot help).
    """

    retries: int = 2
    backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise UsageError(f"retries must be an integer >= 0, got {self.retries!r}")
        if not self.backoff >= 0:
            raise UsageError(f"backoff must be >= 0, got {self.backoff!r}")
        if not self.max_backoff >= 0:
            raise UsageError(f"max_backoff must be >= 0, got {self.max_backoff!r}")

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay(self, failed: int) -> float:
        """Seconds to wait after ``failed`` failed attempts, before the next one."""
        return min(self.backoff * 2.0 ** (failed - 1), self.max_backoff)

    def retryable(self, error: Kamstrup382Error, *, fixed_bcc: bool) -> bool:
        if isinstance(error, BccError):
            return not (fixed_bcc and wrong_algorithm(error))
        return isinstance(error, LineError | ProtocolError)

    def next_delay(self, error: Kamstrup382Error, failed: int, *, fixed_bcc: bool) -> float | None:
        """The wait before the next attempt, or ``None`` to give up and raise ``error``."""
        if failed >= self.attempts or not self.retryable(error, fixed_bcc=fixed_bcc):
            return None
        return self.delay(failed)


def wrong_algorithm(error: BccError) -> bool:
    """The received BCC is the other algorithm's: the meter uses the algorithm not asked for."""
    return error.received in (error.sum7, error.xor)
