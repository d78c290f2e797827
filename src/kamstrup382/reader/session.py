"""The sans-IO readout, shared by the sync and the asyncio reader.

A :class:`Session` lives as long as a reader: it holds the timing, the retry policy, and what
it learned from the meter (the BCC algorithm that matched, the size of its reply). For each
attempt it makes a :class:`Readout`, which the transport drives with three calls and never a
clock of its own::

    readout = session.readout()
    send(readout.request)              # after flushing stale input
    readout.sent(monotonic(), now())
    while not done:
        wait until readout.timeout_at (monotonic) for bytes
        no bytes in time   -> raise readout.expired(monotonic())
        bytes              -> done = readout.receive(data, monotonic(), now())
    reading = readout.reading(port, attempts)

**BCC in ``auto`` mode.** The first telegram that matches either algorithm teaches the session
which one this meter uses; from then on the session requires it. A corrupted telegram of a
sum-BCC meter that happens to match the XOR (1 in 128) is then refused instead of returned.
A telegram that matches only the *other* algorithm is refused once; if the very next telegram
matches it too, the meter really changed (swapped meter, different gateway), the session
accepts it and learns the new algorithm. A fixed ``sum7`` or ``xor`` mode never changes.
Before the first telegram nothing is known: a damaged telegram whose received BCC happens to
be the other algorithm's over the damaged block (1 in 128 damaged telegrams) passes as that
algorithm. A reader kept across readouts pays that once; a fresh reader per readout can
start from what an earlier one learned (``bcc_hint``, e.g. the algorithm of the meter's last
stored reading: still ``auto``, so a meter that really changed is followed after one
refusal).

**A reply broken off mid-way** (a parity or framing error, a deadline while bytes still
come) is still being sent by the meter, which does not listen meanwhile (mode A is half
duplex): :meth:`Readout.needs_drain` says so, and the reader lets the rest pass
(:attr:`Readout.quiet_at`, :meth:`Readout.drain_limit`) before its next request.

**Noise** before the identification's ``/`` is skipped, and on an 8-bit line its parity is
not held against the reply (see :func:`_forgive_noise`).

**Bounded.** A reply longer than the session's ``max_reply`` (bytes from ``/`` to the BCC;
the decoder's :data:`~kamstrup382.protocol.decoder.DEFAULT_MAX_REPLY` by default) fails with a
:class:`~kamstrup382.errors.FramingError` as soon as it is too long; noise before the ``/``
ends with the answer window and is never kept.

**Echo.** An optical head that echoes ``/?!`` CR LF is handled by the decoder, which skips
the echoed line. The answer window stays open until the meter's own identification begins,
so the echo does not start the inter-character clock early.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from kamstrup382.errors import (
    BccError,
    ImplausibleError,
    Kamstrup382Error,
    ProtocolError,
    ReadTimeout,
    UsageError,
)
from kamstrup382.protocol import (
    REQUEST,
    BccAlgorithm,
    BccMode,
    DecoderState,
    Telegram,
    TelegramDecoder,
    add_parity,
    strip_parity,
)
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY, MIN_MAX_REPLY
from kamstrup382.reader.policy import DEADLINE_SLACK, EXPECTED_REPLY_SIZE, RetryPolicy, Timing
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.reading import Reading

__all__ = ["Accept", "Progress", "Readout", "Session", "accept_reading"]

_SLASH = ord("/")
_REQUEST_8N1 = add_parity(REQUEST)

#: ``progress(received, expected)``: bytes received so far against the expected reply size.
Progress = Callable[[int, int], None]

#: ``accept(reading)``: the caller's own check of a complete reading (the collector's history
#: rules), run inside the reader's retries: an :class:`ImplausibleError` it raises fails that
#: attempt, which the retry policy retries like a BCC error.
Accept = Callable[[Reading], None]


def accept_reading(accept: Accept | None, reading: Reading) -> None:
    """Run the caller's check on ``reading``; an :class:`ImplausibleError` gets its bytes."""
    if accept is None:
        return
    try:
        accept(reading)
    except ImplausibleError as error:
        if error.raw is None:
            error.raw = reading.raw
        raise


class Session:
    """Everything a reader keeps between attempts and readouts (no I/O)."""

    def __init__(
        self,
        *,
        line: LineMode,
        bcc: BccMode = BccMode.AUTO,
        timing: Timing | None = None,
        retry: RetryPolicy | None = None,
        expected_size: int = EXPECTED_REPLY_SIZE,
        bcc_hint: BccAlgorithm | str | None = None,
        max_reply: int = DEFAULT_MAX_REPLY,
    ) -> None:
        try:
            self.line = LineMode(line)
            self.bcc_mode = BccMode(bcc)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        if expected_size <= 0:
            raise UsageError(f"expected_size must be positive, got {expected_size!r}")
        if not isinstance(max_reply, int) or max_reply < max(expected_size, MIN_MAX_REPLY):
            raise UsageError(
                f"max_reply must be an int of at least {MIN_MAX_REPLY} and expected_size "
                f"({expected_size}), got {max_reply!r}"
            )
        #: The largest reply accepted, in bytes from '/' to the BCC (see the decoder).
        self.max_reply = max_reply
        self.timing = timing or Timing()
        self.retry = retry or RetryPolicy()
        self.expected_size = expected_size
        #: The algorithm this meter uses, once known (fixed by the mode, or learned in auto).
        self.bcc_algorithm: BccAlgorithm | None = (
            None if self.bcc_mode is BccMode.AUTO else BccAlgorithm(self.bcc_mode.value)
        )
        if bcc_hint is not None and self.bcc_mode is BccMode.AUTO:
            try:  # what an earlier reader learned (a collector's last reading): auto from there
                self.bcc_algorithm = BccAlgorithm(bcc_hint)
            except ValueError as exc:
                raise UsageError(f"bcc_hint must be sum7 or xor, got {bcc_hint!r}") from exc
        self._suspect: BccAlgorithm | None = None  # other algorithm seen on the last telegram

    @property
    def eight_bit(self) -> bool:
        return self.line is LineMode.EIGHT_N_ONE

    @property
    def request(self) -> bytes:
        """The request as written to the port: with even-parity bits on an 8N1 line."""
        return _REQUEST_8N1 if self.eight_bit else REQUEST

    @property
    def fixed_bcc(self) -> bool:
        return self.bcc_mode is not BccMode.AUTO

    def readout(self) -> Readout:
        """A new attempt."""
        return Readout(self)

    def next_delay(self, error: Kamstrup382Error, failed: int) -> float | None:
        """Seconds to wait before the next attempt after ``failed`` failures, or ``None``."""
        return self.retry.next_delay(error, failed, fixed_bcc=self.fixed_bcc)

    def check_bcc(self, telegram: Telegram) -> None:
        """Apply what the session knows about the meter's algorithm (see the module doc).

        The verdict is the decoder's (:attr:`Telegram.bcc_check`): which algorithms its mode
        computed over the block and whether each matches the BCC received.
        """
        learned = self.bcc_algorithm
        used = telegram.bcc_algorithm
        if learned is None:
            self.bcc_algorithm = used
            return
        check = telegram.bcc_check
        if check is None:
            raise UsageError("a telegram built by hand carries no BCC check: decode it")
        if check.matches(learned):
            self._suspect = None
            return
        # (only in auto mode, whose decoder computes both: a fixed mode's refuses the other)
        if not self.fixed_bcc and self._suspect is used:
            self.bcc_algorithm = used  # twice in a row: the meter changed
            self._suspect = None
            return
        if not self.fixed_bcc:
            self._suspect = used
        raise BccError(
            f"BCC mismatch: received 0x{check.received:02x}, this meter's {learned.value} is "
            f"0x{check.expected(learned):02x} (the {used.value} matched)",
            received=check.received,
            sum7=check.expected(BccAlgorithm.SUM7),
            xor=check.expected(BccAlgorithm.XOR),
            offset=telegram.block_offset + len(telegram.data_block) + 1,
        )

    def succeeded(self, telegram: Telegram) -> None:
        self.expected_size = len(telegram.raw)


def _forgive_noise(data: bytes) -> bytes:
    """``data`` with the parity of every byte before the first ``/`` made right.

    Bytes before the identification's ``/`` are line noise that the decoder skips (an
    optical head switching on, a gateway's garbage); on an 8-bit line a parity error there
    says nothing about the reply, so it must not fail the readout. From the first ``/`` on,
    every byte is the decoder's to check. Byte offsets are unchanged.
    """
    for index, byte in enumerate(data):
        if byte & 0x7F == _SLASH:
            return add_parity(strip_parity(data[:index])) + data[index:]
    return add_parity(strip_parity(data))


class Readout:
    """One attempt: the request, the decoder and the clocks of its phases (no I/O).

    :meth:`receive` and :attr:`timeout_at` run for every chunk received: they read plain
    attributes only (the timing's derived values are taken once, here).
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.timing = session.timing
        self._eight_bit = session.eight_bit
        self._inter_character = self.timing.inter_character_timeout
        self.decoder = TelegramDecoder(
            bcc=session.bcc_mode, eight_bit=self._eight_bit, max_reply=session.max_reply
        )
        self.request = session.request
        self.expected = session.expected_size
        self.telegram: Telegram | None = None
        self.sent_at = 0.0  # monotonic
        self.requested_at: datetime | None = None
        self.first_byte_at_mono: float | None = None
        self.first_byte_at: datetime | None = None
        self.last_byte_at = 0.0
        self.done_at_mono = 0.0
        self.done_at: datetime | None = None
        self._answer_by = 0.0
        self._deadline = 0.0

    @property
    def received(self) -> int:
        """Bytes received so far (echo and noise included)."""
        return self.decoder.bytes_seen

    @property
    def done(self) -> bool:
        return self.telegram is not None

    @property
    def answering(self) -> bool:
        """Still waiting for the meter's identification to begin."""
        return self.decoder.state is DecoderState.WAIT_START

    def sent(self, monotonic: float, wall: datetime) -> None:
        """The request has been written (and drained, where the port can tell)."""
        self.sent_at = monotonic
        self.requested_at = wall
        self._answer_by = monotonic + self.timing.answer_window
        self._deadline = monotonic + self.timing.deadline_for(self.expected)

    def _phase_end(self) -> float:
        if self.decoder.state is DecoderState.WAIT_START:
            return self._answer_by
        return self.last_byte_at + self._inter_character

    @property
    def timeout_at(self) -> float:
        """Monotonic time by which the next bytes must arrive.

        It only moves later as bytes arrive, except once: when the identification begins, the
        answer window gives way to the inter-character timeout, which may end sooner.
        """
        if self.decoder.state is DecoderState.WAIT_START:
            end = self._answer_by
        else:
            end = self.last_byte_at + self._inter_character
        deadline = self._deadline
        return end if end < deadline else deadline

    def receive(self, data: bytes, monotonic: float, wall: datetime | None = None) -> bool:
        """Feed bytes received at ``monotonic``; True once the telegram is complete and checked.

        ``wall``: the wall-clock time of ``monotonic``; by default the request's wall-clock
        time plus the monotonic time since (no clock read per chunk).
        Raises the decoder's :class:`ProtocolError` on bad bytes.
        """
        self.last_byte_at = monotonic
        decoder = self.decoder
        if self._eight_bit and decoder.state is DecoderState.WAIT_START:
            data = _forgive_noise(data)
        decoder.feed(data)
        if decoder.state is DecoderState.WAIT_START:
            self.first_byte_at_mono = None  # noise or an echoed request: still waiting
            self.first_byte_at = None
            return False
        if self.first_byte_at_mono is None:
            self.first_byte_at_mono = monotonic
            self.first_byte_at = wall or self._wall(monotonic)
        telegram = decoder.telegram
        if telegram is None:
            return False
        self.session.check_bcc(telegram)
        self.telegram = telegram
        self.done_at_mono = monotonic
        self.done_at = wall or self._wall(monotonic)
        self.session.succeeded(telegram)
        return True

    def _wall(self, monotonic: float) -> datetime:
        if self.requested_at is None:
            raise UsageError("bytes received before the request was sent")
        return self.requested_at + timedelta(seconds=monotonic - self.sent_at)

    def expired(self, monotonic: float) -> ReadTimeout:
        """The timeout to raise when nothing arrived by :attr:`timeout_at`."""
        received = self.received
        if self._deadline <= self._phase_end():
            elapsed = self.timing.deadline_for(self.expected)
            return ReadTimeout(
                f"readout not complete {elapsed:.3g} s after the request "
                f"({self.decoder.incomplete_error().detail})",
                phase="deadline",
                received=received,
            )
        if self.answering:
            return ReadTimeout(
                f"no answer within {self.timing.answer_window:.3g} s of the request",
                phase="answer",
                received=received,
            )
        return ReadTimeout(
            f"reply stopped: nothing for {self.timing.inter_character_timeout:.3g} s "
            f"({self.decoder.incomplete_error().detail})",
            phase="inter_character",
            received=received,
        )

    # -- after a failure: let the rest of a broken reply pass before the next request ------

    def needs_drain(self, error: Kamstrup382Error) -> bool:
        """Whether the meter may still be sending when ``error`` ended this attempt.

        A protocol error in mid-reply (parity, framing) or a deadline hit while bytes kept
        coming: a mode A meter finishes its telegram whatever the reader thinks of it, and its
        tail must not be mistaken for the answer to the next request.
        """
        if isinstance(error, ReadTimeout):
            return error.phase == "deadline" and self.received > 0
        return isinstance(error, ProtocolError) and not isinstance(error, BccError)

    def drain_limit(self) -> float:
        """Monotonic time at which draining stops even if bytes keep arriving."""
        left = max(self.expected - self.received, 0) + len(REQUEST)
        return (
            self.last_byte_at
            + self.timing.transfer_time(left) * DEADLINE_SLACK
            + self.timing.inter_character_timeout
        )

    @property
    def quiet_at(self) -> float:
        """Monotonic time at which the line counts as silent, if nothing more arrives."""
        return self.last_byte_at + self.timing.inter_character_timeout

    def discard(self, monotonic: float) -> None:
        """Bytes of a failed reply arrived while draining."""
        self.last_byte_at = monotonic

    def reading(self, port: str, attempts: int) -> Reading:
        """The result, once :attr:`done`."""
        if (
            self.telegram is None
            or self.requested_at is None
            or self.first_byte_at is None
            or self.first_byte_at_mono is None
            or self.done_at is None
        ):
            raise UsageError("the readout is not complete")
        return Reading(
            telegram=self.telegram,
            port=port,
            line=self.session.line,
            requested_at=self.requested_at,
            first_byte_at=self.first_byte_at,
            done_at=self.done_at,
            answer_delay=self.first_byte_at_mono - self.sent_at,
            duration=self.done_at_mono - self.sent_at,
            attempts=attempts,
        )
