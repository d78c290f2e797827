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
    reading = session.conclude(readout, port, attempts, accept)   # the caller's check

with :meth:`Session.begin` before the first attempt of a readout and :meth:`Session.failed`
after its last one failed.

**Plausibility.** Every complete telegram is held to what the meter guarantees
(:func:`~kamstrup382.protocol.plausibility.check_telegram` with the session's ``dialect``, by
default the one the telegram's identification names, :mod:`~kamstrup382.protocol.dialects`):
a telegram whose BCC
matched but which the meter cannot have sent (a character doubled in one register and dropped
in another, two digits swapped) fails the attempt with an
:class:`~kamstrup382.errors.ImplausibleError` carrying its bytes, and the reader retries it like
a BCC error. The caller's own check (``accept``, the collector's history) runs after it, in
the reader, inside the same retries.

**BCC in ``auto`` mode.** What the session knows of the meter's algorithm is a
:class:`~kamstrup382.reader.bcc_memory.BccMemory`, given at the start (``bcc_memory``, or
``bcc_hint``: an algorithm the meter's stored readings used) and replaced after each readout
(one ``read()``: all its attempts), so that a fresh reader per readout continues where the last
one stopped. The first telegram that matches either algorithm teaches it (one that both match
teaches nothing). From then on a telegram that matches only the *other* algorithm is never
accepted within a readout, however many attempts it makes: a corrupted telegram of a sum-BCC
meter that happens to match the XOR (1 in 128) is refused, not returned. The meter's
algorithm changes only when two *consecutive* readouts each gave a telegram that matches
only the other algorithm and passed every plausibility rule (:func:`check_telegram` and
``accept``): the first readout fails (its telegrams refused with a
:class:`~kamstrup382.errors.BccError`) and leaves a suspicion; the next accepts such a telegram
and learns the new algorithm; any other end of that next readout clears the suspicion. What a
readout learned is committed only after its telegram passed every check. Before anything is
known, a damaged telegram whose received BCC happens to be the other algorithm's over the
damaged block passes as that algorithm (1 in 128 damaged telegrams, and it must still pass
every plausibility rule); :class:`~kamstrup382.reader.bcc_memory.BccCertainty` says how sure
a reading's algorithm is. A fixed ``sum7`` or ``xor`` mode never changes.

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
from dataclasses import replace
from datetime import datetime, timedelta

from kamstrup382.errors import (
    BccError,
    FramingError,
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
    Dialect,
    Telegram,
    TelegramDecoder,
    add_parity,
    check_telegram,
    strip_parity,
)
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY, MIN_MAX_REPLY
from kamstrup382.reader.bcc_memory import BccCertainty, BccMemory
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
        bcc_memory: BccMemory | None = None,
        dialect: Dialect | None = None,
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
        if dialect is not None and not isinstance(dialect, Dialect):
            raise UsageError(f"dialect must be a Dialect or None, got {dialect!r}")
        #: What the meter guarantees in its telegrams (widths, sums, maximum power).
        self.dialect = dialect
        if bcc_memory is not None and not isinstance(bcc_memory, BccMemory):
            raise UsageError(f"bcc_memory must be a BccMemory, got {bcc_memory!r}")
        try:  # what an earlier reader learned: its memory, or the meter's stored algorithm
            hint = None if bcc_hint is None else BccAlgorithm(bcc_hint)
        except ValueError as exc:
            raise UsageError(f"bcc_hint must be sum7 or xor, got {bcc_hint!r}") from exc
        if self.bcc_mode is not BccMode.AUTO:  # a fixed mode knows its algorithm, always
            bcc_memory = BccMemory.from_hint(BccAlgorithm(self.bcc_mode.value))
        elif bcc_memory is None:
            bcc_memory = BccMemory.from_hint(hint)
        self._memory = bcc_memory
        #: In the readout under way: the other algorithm a refused but plausible telegram
        #: matched alone (the suspicion the readout leaves if it fails).
        self._seen_other: BccAlgorithm | None = None

    @property
    def eight_bit(self) -> bool:
        """Whether bytes carry the parity bit (``auto``: until the reply says otherwise)."""
        return self.line is not LineMode.SEVEN_E_ONE

    @property
    def request(self) -> bytes:
        """The request as written to the port: with even-parity bits on an 8N1 line (and on
        ``auto``: a gateway doing 7E1 itself drops bit 7)."""
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

    @property
    def bcc_memory(self) -> BccMemory:
        """What the session knows of the meter's BCC algorithm, after the last readout."""
        return self._memory

    @property
    def bcc_algorithm(self) -> BccAlgorithm | None:
        """The algorithm this meter uses, once known (fixed by the mode, or learned in auto)."""
        return self._memory.algorithm

    def begin(self) -> None:
        """A readout (one ``read()``, all its attempts) begins."""
        self._seen_other = None

    def failed(self) -> None:
        """The readout failed: every attempt did. It leaves a suspicion if one of its telegrams
        matched only the other algorithm and passed every plausibility rule."""
        if not self.fixed_bcc:
            self._memory = self._memory.failed(self._seen_other)
        self._seen_other = None

    def check_bcc(self, telegram: Telegram) -> BccError | None:
        """The error that refuses ``telegram`` under what the session knows of the meter's
        algorithm (see the module doc), or ``None``; learns nothing (:meth:`conclude` does).

        The verdict is the decoder's (:attr:`Telegram.bcc_check`): which algorithms its mode
        computed over the block and whether each matches the BCC received.
        """
        check = telegram.bcc_check
        if check is None:
            raise UsageError("a telegram built by hand carries no BCC check: decode it")
        other = self._memory.refuses(check)
        if other is None:
            return None
        learned = self._memory.algorithm
        assert learned is not None  # refuses() needs a known algorithm
        return BccError(
            f"BCC mismatch: received 0x{check.received:02x}, this meter's {learned.value} is "
            f"0x{check.expected(learned):02x} (the {other.value} matched)",
            received=check.received,
            sum7=check.expected(BccAlgorithm.SUM7),
            xor=check.expected(BccAlgorithm.XOR),
            offset=telegram.block_offset + len(telegram.data_block) + 1,
        )

    def conclude(
        self, readout: Readout, port: str, attempts: int, accept: Accept | None = None
    ) -> Reading:
        """The reading of a complete attempt, after the caller's check (``accept``); commits
        what it teaches. Raises the attempt's refusal (:class:`BccError`) or the caller's
        :class:`ImplausibleError` (with the reply's bytes) instead."""
        telegram = readout.telegram
        if telegram is None:
            raise UsageError("the readout is not complete")
        check = telegram.bcc_check
        assert check is not None  # the readout's telegram came from its decoder
        if readout.refused is not None:
            accept_reading(accept, readout.reading(port, attempts))
            self._seen_other = self._memory.refuses(check)
            raise readout.refused
        # what the readout teaches, committed once the caller accepted its reading
        memory = self._memory if self.fixed_bcc else self._memory.accepted(check)
        known = memory.algorithm
        if known is not None and known is not telegram.bcc_algorithm and check.matches(known):
            # both matched (the decoder names the sum first): it is the meter's known one
            telegram = replace(telegram, bcc_algorithm=known)
        reading = readout.reading(
            port, attempts, telegram=telegram, bcc_certainty=memory.certainty(check)
        )
        accept_reading(accept, reading)
        self._memory = memory
        self._seen_other = None
        self.expected_size = len(reading.raw)
        return reading


#: The identification's '/' with its even-parity bit (five bits set: the parity bit is 1).
_SLASH_8N1 = 0xAF
#: How an HTTP server's answer begins.
_HTTP = b"HTTP/"


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
        #: A complete, plausible telegram the session must still refuse (its BCC matched only
        #: the other algorithm): raised by :meth:`Session.conclude` after the caller's check.
        self.refused: BccError | None = None
        self.sent_at = 0.0  # monotonic
        self.requested_at: datetime | None = None
        self.first_byte_at_mono: float | None = None
        self.first_byte_at: datetime | None = None
        self.last_byte_at = 0.0
        self.done_at_mono = 0.0
        self.done_at: datetime | None = None
        self._head = b""  # the first bytes received: what answered, if not a meter
        #: ``auto``: the line mode the reply's '/' showed (None until it came)
        self.line: LineMode | None = None if session.line is LineMode.AUTO else session.line
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
        return not self.decoder.started

    def sent(self, monotonic: float, wall: datetime) -> None:
        """The request has been written (and drained, where the port can tell)."""
        self.sent_at = monotonic
        self.requested_at = wall
        self._answer_by = monotonic + self.timing.answer_window
        self._deadline = monotonic + self.timing.deadline_for(self.expected)

    def _phase_end(self) -> float:
        if not self.decoder.started:
            return self._answer_by
        return self.last_byte_at + self._inter_character

    @property
    def timeout_at(self) -> float:
        """Monotonic time by which the next bytes must arrive.

        It only moves later as bytes arrive, except once: when the identification begins, the
        answer window gives way to the inter-character timeout, which may end sooner.
        """
        if not self.decoder.started:
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
        if len(self._head) < len(_HTTP):
            self._head += strip_parity(data[: len(_HTTP) - len(self._head)])
        if self.line is None:
            data = self._decide_line(data)
        if self._eight_bit and not decoder.started:
            data = _forgive_noise(data)
        try:
            decoder.feed(data)
        except ProtocolError as exc:
            if self._head.startswith(_HTTP):  # a web server on the port, not a meter
                raise FramingError(
                    "the other end answered like an HTTP server ('HTTP/...'), not like a meter: "
                    "is the port the gateway's raw TCP port?",
                    offset=0,
                ) from exc
            raise
        if not decoder.started:
            self.first_byte_at_mono = None  # noise or an echoed request: still waiting
            self.first_byte_at = None
            return False
        if self.first_byte_at_mono is None:
            self.first_byte_at_mono = monotonic
            self.first_byte_at = wall or self._wall(monotonic)
        telegram = decoder.telegram
        if telegram is None:
            return False
        refused = self.session.check_bcc(telegram)
        try:
            check_telegram(telegram, self.session.dialect)
        except ImplausibleError as error:
            error.raw = telegram.raw
            raise (error if refused is None else refused) from None
        self.refused = refused
        self.telegram = telegram
        self.done_at_mono = monotonic
        self.done_at = wall or self._wall(monotonic)
        return True

    def _decide_line(self, data: bytes) -> bytes:
        """``auto``: the identification's '/' tells the line mode (``0xAF``: it carries its
        parity bit, 8N1; ``0x2F``: a gateway doing 7E1 passes 7-bit characters). Noise before
        it is cleared of bit 7 (the decoder drops it either way)."""
        for index, byte in enumerate(data):
            if byte in (_SLASH, _SLASH_8N1):
                eight = byte == _SLASH_8N1
                self.line = LineMode.EIGHT_N_ONE if eight else LineMode.SEVEN_E_ONE
                self._eight_bit = eight
                self.decoder.decide_line(eight)
                if eight:
                    return data
                return strip_parity(data[:index]) + data[index:]
        return data  # all noise so far: the 8-bit decoder forgives and drops it

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
        if self.decoder.telegram is not None:  # the reply is complete: nothing more comes
            return False
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

    def reading(
        self,
        port: str,
        attempts: int,
        *,
        telegram: Telegram | None = None,
        bcc_certainty: BccCertainty | None = None,
    ) -> Reading:
        """The result, once :attr:`done`; ``telegram``: the readout's, unless the session named
        its BCC algorithm anew; ``bcc_certainty``: as the session judged it."""
        if (
            self.telegram is None
            or self.requested_at is None
            or self.first_byte_at is None
            or self.first_byte_at_mono is None
            or self.done_at is None
        ):
            raise UsageError("the readout is not complete")
        return Reading(
            telegram=self.telegram if telegram is None else telegram,
            port=port,
            line=self.line or self.session.line,
            requested_at=self.requested_at,
            first_byte_at=self.first_byte_at,
            done_at=self.done_at,
            answer_delay=self.first_byte_at_mono - self.sent_at,
            duration=self.done_at_mono - self.sent_at,
            attempts=attempts,
            bcc_certainty=bcc_certainty,
        )
