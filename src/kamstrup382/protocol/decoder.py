"""The incremental reply decoder: feed it bytes, take events out. No I/O, no clock.

States, and what moves the decoder on::

    WAIT_START      --'/'----------------------------> IDENTIFICATION  (skips bytes before '/')
    IDENTIFICATION  --CR LF of an echoed '/?!'-------> WAIT_START      (an optical head's echo)
    IDENTIFICATION  --CR LF--------------------------> WAIT_STX        emits IdentificationReceived
    WAIT_STX        --STX----------------------------> DATA
    DATA            --ETX----------------------------> BCC
    BCC             --one byte-----------------------> DONE            emits TelegramReceived
    any             --a byte that breaks the rules---> FAILED          raises a ProtocolError

``bytes_seen`` counts every byte fed, for progress display. In 8-bit mode (an 8N1 port or a TCP
gateway delivering 7E1 characters with their parity bit) every byte's even parity is checked
and the bit stripped before anything else looks at it. The BCC is checked before the lines are
parsed, so a corrupted character is reported as what it most likely is: a BCC mismatch.

Every input takes this one path, whole or in pieces: each step searches only the bytes it has
not looked at yet, so feeding a reply byte by byte costs time linear in its length. Once the
BCC is in, the :class:`Telegram` is built, which checks the block against the grammar in one
pass of one regular expression (:func:`~kamstrup382.protocol.dataset.split_data_block`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from kamstrup382.errors import BccError, FramingError, ParityError, ProtocolError, UsageError
from kamstrup382.protocol.bcc import BccCheck, BccMode, bcc_sum7, bcc_xor, check_bcc
from kamstrup382.protocol.frame import ETX, REQUEST, STX
from kamstrup382.protocol.identification import Identification, parse_identification
from kamstrup382.protocol.parity import first_parity_error, strip_parity
from kamstrup382.protocol.telegram import Telegram

__all__ = [
    "DecoderState",
    "Event",
    "IdentificationReceived",
    "TelegramDecoder",
    "TelegramReceived",
    "decode_reply",
]

#: Longest identification line accepted before giving up on finding its CR LF.
MAX_IDENTIFICATION_LINE = 100
#: Largest reply accepted by default, in bytes from the identification's ``/`` to the BCC.
#: A Kamstrup 382's mode A reply is 167 bytes (its identification line and some ten registers);
#: meters of this family with every register of the list configured reply with well under 1 KiB.
#: 2 KiB leaves room for a longer register list without letting a gateway that streams an endless
#: "data block" make a reader keep more than that per link.
DEFAULT_MAX_REPLY = 2048
#: The smallest limit that makes sense: a complete minimal reply (``/AAA5x`` CR LF STX ``!``
#: CR LF ETX BCC).
MIN_MAX_REPLY = 16

_ECHO = REQUEST[:-2]


class DecoderState(enum.Enum):
    WAIT_START = "wait_start"
    IDENTIFICATION = "identification"
    WAIT_STX = "wait_stx"
    DATA = "data"
    BCC = "bcc"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True, unsafe_hash=True)
class IdentificationReceived:
    identification: Identification
    offset: int  # stream position of its '/'


@dataclass(slots=True, unsafe_hash=True)
class TelegramReceived:
    telegram: Telegram
    bytes_seen: int  # stream position just after the BCC


Event = IdentificationReceived | TelegramReceived
#: One state's step (see the class), a function of the decoder (not a bound method: the decoder
#: keeps its step, and a bound method would make a reference cycle that only the garbage
#: collector could free): consumes what it can, returns the next step or None.
Step = Callable[["TelegramDecoder", list[Event]], "Step | None"]


class TelegramDecoder:
    """Decode one reply fed in chunks of any size.

    ``bcc``: ``SUM7`` (Kamstrup 382, the default), ``XOR`` (IEC 62056-21) or ``AUTO`` (either;
    the telegram says which matched). ``eight_bit``: input bytes carry the even-parity bit.
    ``max_reply``: the largest reply accepted, in bytes from the identification's ``/`` to the
    BCC (:data:`DEFAULT_MAX_REPLY`); a longer one is a :class:`FramingError` as soon as its
    byte ``max_reply + 1`` arrives, naming the limit. Bytes before the ``/`` are counted in
    :attr:`skipped` and not kept, so no input makes the decoder keep more than ``max_reply``
    bytes plus one chunk.
    """

    __slots__ = (
        "_base",
        "_buf",
        "_etx",
        "_max_reply",
        "_pos",
        "_seen",
        "_step",
        "_stx",
        "bcc_mode",
        "eight_bit",
        "identification",
        "skipped",
        "started",
        "telegram",
        "trailing",
    )

    def __init__(
        self,
        *,
        bcc: BccMode = BccMode.SUM7,
        eight_bit: bool = False,
        max_reply: int = DEFAULT_MAX_REPLY,
    ) -> None:
        if not isinstance(max_reply, int) or max_reply < MIN_MAX_REPLY:
            raise UsageError(
                f"max_reply must be an int of at least {MIN_MAX_REPLY}, got {max_reply!r}"
            )
        self._max_reply = max_reply
        self.bcc_mode = bcc if isinstance(bcc, BccMode) else BccMode(bcc)
        self.eight_bit = eight_bit
        #: Whether the reply has begun: its '/' arrived (not an echoed request's). Until done
        #: or failed, False exactly in state ``WAIT_START``; cheaper to ask on every chunk than
        #: the state (a property).
        self.started = False
        self.identification: Identification | None = None
        self.telegram: Telegram | None = None
        self.skipped = 0  # bytes before the identification (noise, an echo of the request)
        self.trailing = 0  # bytes fed after the BCC
        self._seen = 0
        self._buf = bytearray()
        self._pos = 0  # next unread position in _buf
        self._base = 0  # stream position of _buf[0] (the identification's '/', once found)
        self._stx = 0  # position in _buf of STX
        self._etx = 0  # position in _buf of ETX, once found
        #: the step of the current state; ``None`` once done or failed
        self._step: Step | None = TelegramDecoder._wait_start

    def decide_line(self, eight_bit: bool) -> None:
        """Whether the bytes carry the parity bit, decided before the identification begins
        (a reader on a line of unknown mode tells it from the reply's ``/``)."""
        if self.state is not DecoderState.WAIT_START:
            raise UsageError("the line mode is decided before the identification begins")
        self.eight_bit = eight_bit

    @property
    def state(self) -> DecoderState:
        """The state the decoder is in: the step it runs next (see the module's documentation);
        with no step left, done (a telegram) or failed."""
        step = self._step
        if step is None:
            return DecoderState.FAILED if self.telegram is None else DecoderState.DONE
        return _STATE_OF_STEP[step.__name__]

    @property
    def bytes_seen(self) -> int:
        return self._seen

    @property
    def done(self) -> bool:
        return self.telegram is not None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Take the next chunk; return the events it completes (possibly none).

        Raises a :class:`~kamstrup382.errors.ProtocolError` at the first byte that breaks the
        protocol; the decoder is then spent (:class:`UsageError` if fed again).
        """
        step = self._step
        if step is None:  # done, or failed
            if self.state is DecoderState.FAILED:
                raise UsageError("the decoder failed earlier; start a new one for the next reply")
            self._seen += len(data)
            self.trailing += len(data)
            return []
        if type(data) is not bytes:
            data = bytes(data)
        base = self._seen
        self._seen += len(data)
        try:
            # A bad byte is an error only if the bytes before it neither failed nor finished
            # the reply: the same error at the same place however the input is split.
            bad: int | None = None
            if self.eight_bit:
                bad = first_parity_error(data)
                if bad is not None:
                    error: ProtocolError = ParityError(
                        f"byte 0x{data[bad]:02x} fails even parity", offset=base + bad
                    )
                    data = data[:bad]
                data = strip_parity(data)
            elif not data.isascii():
                bad = next(i for i, b in enumerate(data) if b & 0x80)
                error = FramingError(
                    f"byte 0x{data[bad]:02x} has bit 7 set on a 7-bit line "
                    "(an 8N1 port or gateway needs 8-bit mode)",
                    offset=base + bad,
                )
                data = data[:bad]
            self._buf += data
            events: list[Event] = []
            while True:  # each step runs on from where the last one stopped
                following = step(self, events)
                if following is None:
                    break
                step = following
            if self._step is not None:  # not done (the BCC's step says so): wait for more
                self._step = step
            if bad is not None:
                if not self.done:
                    raise error
                self.trailing += self._seen - base - bad  # after the BCC: not looked at
        except Exception:
            self._step = None  # failed: no telegram, no step
            raise
        return events

    def incomplete_error(self) -> FramingError:
        """What is missing, as an error, for a reply that ended before its BCC."""
        reasons = {
            DecoderState.WAIT_START: "no identification line: '/' never arrived",
            DecoderState.IDENTIFICATION: "identification line not ended by CR LF",
            DecoderState.WAIT_STX: "no STX after the identification line",
            DecoderState.DATA: "data block not ended by ETX",
            DecoderState.BCC: "no BCC after ETX",
        }
        reason = reasons.get(self.state, f"decoder in state {self.state.value}")
        return FramingError(f"reply incomplete: {reason}", offset=self._seen)

    # -- steps: each consumes what it can and returns the step that follows, or None to wait
    #    for more bytes

    @property
    def max_reply(self) -> int:
        return self._max_reply

    @property
    def buffered(self) -> int:
        """Bytes the decoder keeps now: at most :attr:`max_reply` plus one chunk."""
        return len(self._buf)

    def _too_long(self, tail: int) -> FramingError:
        """The error for a reply that needs ``tail`` more bytes at least, past the limit (the
        steps check that). Its offset is the byte that made it so, whatever the chunks: the
        first beyond the limit, or (with a ``tail``) the first where the tail should have
        begun."""
        limit = self._max_reply
        return FramingError(
            f"reply longer than {limit} bytes (the limit from '/' to the BCC)",
            offset=self._base + limit - tail,
        )

    def _line_too_long(self) -> FramingError:
        return FramingError(
            f"identification line longer than {MAX_IDENTIFICATION_LINE} characters without CR LF",
            offset=self._base,
        )

    # Once the '/' is found, it is the buffer's first byte: positions in ``_buf`` are positions
    # in the reply, and ``_base`` is the stream position of its '/'.

    def _wait_start(self, events: list[Event]) -> Step | None:
        buf, pos = self._buf, self._pos
        index = buf.find(b"/", pos)
        if index < 0:  # nothing worth keeping: noise before the reply
            self.skipped += len(buf) - pos
            self._base += len(buf)
            buf.clear()
            self._pos = 0
            return None
        if index:  # what came before (noise, echoed lines) is not kept either
            self.skipped += index - pos
            del buf[:index]
            self._base += index
        self._pos = 1
        self.started = True
        return TelegramDecoder._identification

    def _identification(self, events: list[Event]) -> Step | None:
        buf = self._buf
        end = buf.find(b"\n", self._pos)
        if end < 0:  # not yet: what there is must fit the line's limit and the reply's
            if len(buf) > MAX_IDENTIFICATION_LINE:
                raise self._line_too_long()
            if len(buf) > self._max_reply:
                raise self._too_long(0)
            self._pos = len(buf)
            return None
        if end > MAX_IDENTIFICATION_LINE:
            raise self._line_too_long()
        if end >= self._max_reply:
            raise self._too_long(0)
        if buf[end - 1] != 0x0D:
            raise FramingError(
                "identification line ended by LF without CR", offset=self._base + end
            )
        content = bytes(buf[: end - 1])
        self._pos = end + 1
        if content == _ECHO:  # an optical head echoing the request
            self.skipped += end + 1
            self.started = False
            return TelegramDecoder._wait_start
        ident = parse_identification(content, offset=self._base)
        self.identification = ident
        events.append(IdentificationReceived(ident, self._base))
        return TelegramDecoder._wait_stx

    def _wait_stx(self, events: list[Event]) -> Step | None:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return None
        if buf[pos] != STX:
            raise FramingError(
                f"expected STX after the identification line, got 0x{buf[pos]:02x}",
                offset=self._base + pos,
            )
        self._stx = pos
        self._pos = pos + 1
        return TelegramDecoder._data

    def _data(self, events: list[Event]) -> Step | None:
        buf = self._buf
        index = buf.find(ETX, self._pos)
        if index < 0:  # not yet: what there is, with an ETX and a BCC, must fit the limit
            if len(buf) + 2 > self._max_reply:
                raise self._too_long(2)
            self._pos = len(buf)
            return None
        if index + 2 > self._max_reply:  # with its ETX and BCC, the reply must fit the limit
            raise self._too_long(2)
        self._etx = index
        self._pos = index + 1
        return TelegramDecoder._bcc

    def _bcc(self, events: list[Event]) -> Step | None:
        """Check the BCC, then build the telegram, which checks the block's grammar."""
        buf, stx, end = self._buf, self._stx, self._etx + 2
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])  # the reply, from its '/' to the BCC
        block = raw[stx + 1 : -1]  # what the BCC covers: the data block and ETX
        offset = self._base + stx + 1
        check = check_bcc(block, raw[-1], self.bcc_mode)
        algorithm = check.matched
        if algorithm is None:  # the error, with what each algorithm computes
            raise self._bcc_error(block, check, offset)
        assert self.identification is not None  # the state machine passed its line
        telegram = Telegram(
            self.identification,
            block[:-1].decode("ascii"),
            algorithm,
            check.received,
            raw,
            offset,
            check,
        )
        self.telegram = telegram
        self.trailing = len(buf) - end
        self._step = None
        events.append(TelegramReceived(telegram, self._base + end))
        return None

    def _bcc_error(self, block: bytes, check: BccCheck, offset: int) -> BccError:
        """The mismatch, with what each algorithm computes over ``block`` (at ``offset``)."""
        sum7 = bcc_sum7(block) if check.sum7 is None else check.sum7
        xor = bcc_xor(block) if check.xor is None else check.xor
        expected = {
            BccMode.SUM7: f"sum7 0x{sum7:02x}",
            BccMode.XOR: f"xor 0x{xor:02x}",
            BccMode.AUTO: f"sum7 0x{sum7:02x} or xor 0x{xor:02x}",
        }[self.bcc_mode]
        hint = ""
        if self.bcc_mode is BccMode.XOR and check.received == sum7:
            hint = ": the 7-bit sum matched, as a Kamstrup 382's does (use bcc sum7 or auto)"
        elif self.bcc_mode is BccMode.SUM7 and check.received == xor:
            hint = ": the IEC XOR matched, as a standard IEC meter's does (use bcc xor or auto)"
        return BccError(
            f"BCC mismatch ({self.bcc_mode.value}): received 0x{check.received:02x}, "
            f"expected {expected}{hint}",
            received=check.received,
            sum7=sum7,
            xor=xor,
            offset=offset + len(block),
        )


#: The state of each step (its name): the state is kept once, as the step the decoder runs next.
_STATE_OF_STEP = {
    TelegramDecoder._wait_start.__name__: DecoderState.WAIT_START,
    TelegramDecoder._identification.__name__: DecoderState.IDENTIFICATION,
    TelegramDecoder._wait_stx.__name__: DecoderState.WAIT_STX,
    TelegramDecoder._data.__name__: DecoderState.DATA,
    TelegramDecoder._bcc.__name__: DecoderState.BCC,
}


def decode_reply(
    data: bytes | bytearray | memoryview,
    *,
    bcc: BccMode = BccMode.SUM7,
    eight_bit: bool = False,
    max_reply: int = DEFAULT_MAX_REPLY,
) -> Telegram:
    """Decode one whole captured reply; anything missing or extra is an error.

    Bytes before the identification's ``/`` (noise, an echo of the request) are skipped, as
    the incremental decoder does; bytes after the BCC are a :class:`FramingError`.
    """
    decoder = TelegramDecoder(bcc=bcc, eight_bit=eight_bit, max_reply=max_reply)
    decoder.feed(data)
    if decoder.telegram is None:
        raise decoder.incomplete_error()
    if decoder.trailing:
        raise FramingError(
            f"{decoder.trailing} bytes after the BCC", offset=decoder.bytes_seen - decoder.trailing
        )
    return decoder.telegram
