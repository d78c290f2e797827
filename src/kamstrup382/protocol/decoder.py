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

A whole reply arriving in one piece (a capture, a gateway's single read) takes a straight
path without the state machine when it is the common, well-formed case and both its
identification line and its block's shape were seen before; anything else (and the first
reply of a meter) goes through the state machine, which raises the precise error. The two
paths give the same telegram: the tests feed every input whole, split and byte by byte.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar
from zlib import adler32

from kamstrup382.errors import BccError, FramingError, ParityError, ProtocolError, UsageError
from kamstrup382.protocol.bcc import BccAlgorithm, BccMode, bcc_sum7, bcc_xor, match_bcc
from kamstrup382.protocol.dataset import _DIGITS_AS_ZERO, _LAYOUTS, block_layout, clear_layouts
from kamstrup382.protocol.frame import ETX, REQUEST, STX
from kamstrup382.protocol.identification import Identification, parse_identification
from kamstrup382.protocol.parity import _STRIP_TABLE as _STRIP_PARITY
from kamstrup382.protocol.parity import _VALID as _EVEN_PARITY
from kamstrup382.protocol.parity import first_parity_error, strip_parity
from kamstrup382.protocol.telegram import Telegram

__all__ = [
    "DecoderState",
    "Event",
    "IdentificationReceived",
    "TelegramDecoder",
    "TelegramReceived",
    "clear_caches",
    "decode_reply",
]

#: Longest identification line accepted before giving up on finding its CR LF.
MAX_IDENTIFICATION_LINE = 100
#: Largest data block accepted before giving up on finding ETX.
MAX_DATA_BLOCK = 65536

_ECHO = REQUEST[:-2]
#: Identification lines seen (without CR LF), parsed, with the byte sum of the line, its CR LF
#: and the STX after it: a meter sends the same line on every readout.
_IDENTIFICATIONS: dict[bytes, tuple[Identification, int]] = {}
_IDENTIFICATION_CACHE = 1024
_SUM7 = BccAlgorithm.SUM7
_XOR = BccAlgorithm.XOR
_SLASH, _CR, _LF = ord("/"), 0x0D, 0x0A
#: Replies of at most 256 bytes (``etx`` below this) have their sum taken whole by Adler-32.
_ADLER_WHOLE = 255


def clear_caches() -> None:
    """Forget the identification lines and block shapes seen (they are bounded anyway).

    Only speed depends on them: the next reply is checked in full by the precise path.
    """
    _IDENTIFICATIONS.clear()
    clear_layouts()


class DecoderState(enum.Enum):
    WAIT_START = "wait_start"
    IDENTIFICATION = "identification"
    WAIT_STX = "wait_stx"
    DATA = "data"
    BCC = "bcc"
    DONE = "done"
    FAILED = "failed"

    # members are singletons compared by identity: hash them so, in C (Enum's own __hash__ is
    # Python code, and the decoder looks its state up on every step)
    __hash__ = object.__hash__


# the members as module constants: an Enum member read as a class attribute costs a
# descriptor call, and the decoder tests its state on every chunk
_WAIT_START = DecoderState.WAIT_START
_IDENTIFICATION = DecoderState.IDENTIFICATION
_WAIT_STX = DecoderState.WAIT_STX
_DATA = DecoderState.DATA
_BCC = DecoderState.BCC
_DONE = DecoderState.DONE
_FAILED = DecoderState.FAILED
_MODE_SUM7 = BccMode.SUM7
_new = object.__new__


@dataclass(frozen=True, slots=True)
class IdentificationReceived:
    identification: Identification
    offset: int  # stream position of its '/'


@dataclass(frozen=True, slots=True)
class TelegramReceived:
    telegram: Telegram
    bytes_seen: int  # stream position just after the BCC


Event = IdentificationReceived | TelegramReceived


def _whole_reply(data: bytes, mode: BccMode, base: int) -> Telegram | None:
    """The telegram of ``data`` (7-bit, exactly ``/`` ... BCC) on the straight path.

    Returns ``None`` whenever the state machine must look (anything unusual or wrong, an
    identification line or a block shape not seen before); never raises.
    """
    line_end = data.find(b"\n")
    if line_end < 2 or data[0] != _SLASH or data[line_end - 1] != _CR:
        return None
    stx = line_end + 1
    etx = len(data) - 2
    # (an ETX before the last but one byte needs no search: it would be in ``text`` below,
    # and no well-formed shape, the only kind cached, holds a control character)
    if etx <= stx or data[stx] != STX or data[etx] != ETX:
        return None
    known = _IDENTIFICATIONS.get(data[: line_end - 1])
    if known is None:
        return None
    ident, prefix_sum = known
    received = data[-1]
    if mode is _MODE_SUM7 and etx < _ADLER_WHOLE:
        # the block's sum is the reply's (Adler-32's first half, exact up to 256 bytes) less
        # the identification line, CR LF, STX (summed once per line) and the BCC byte itself
        if ((adler32(data) & 0xFFFF) - 1 - prefix_sum - received) & 0x7F != received:
            return None
        algorithm = _SUM7
    else:
        found = match_bcc(data[stx + 1 : etx + 1], received, mode)
        if found is None:
            return None
        algorithm = found
    text = data[stx + 1 : etx]
    layout = _LAYOUTS.get(text.translate(_DIGITS_AS_ZERO))
    if layout is None:
        return None
    # Telegram.checked, inlined (one call less on the hot path)
    telegram = _new(Telegram)
    attrs = telegram.__dict__
    attrs["identification"] = ident
    attrs["data_block"] = text.decode("ascii")
    attrs["bcc_algorithm"] = algorithm
    attrs["bcc"] = received
    attrs["raw"] = data
    attrs["block_offset"] = base + stx + 1
    attrs["layout"] = layout
    return telegram


class TelegramDecoder:
    """Decode one reply fed in chunks of any size.

    ``bcc``: ``SUM7`` (Kamstrup 382, the default), ``XOR`` (IEC 62056-21) or ``AUTO`` (either;
    the telegram says which matched). ``eight_bit``: input bytes carry the even-parity bit.
    """

    def __init__(self, *, bcc: BccMode = BccMode.SUM7, eight_bit: bool = False) -> None:
        self.bcc_mode = bcc if type(bcc) is BccMode else BccMode(bcc)
        self.eight_bit = eight_bit
        self.state = _WAIT_START
        self.identification: Identification | None = None
        self.telegram: Telegram | None = None
        self.skipped = 0  # bytes before the identification (noise, an echo of the request)
        self.trailing = 0  # bytes fed after the BCC
        self._seen = 0
        self._buf = bytearray()
        self._pos = 0  # next unread position in _buf
        self._base = 0  # stream position of _buf[0]
        self._start = 0  # position in _buf of the identification's '/'
        self._stx = 0  # position in _buf of STX
        self._etx = 0  # position in _buf of ETX, once found
        self._limit = 0  # longest _buf without an ETX, once STX is found

    @property
    def bytes_seen(self) -> int:
        return self._seen

    @property
    def done(self) -> bool:
        return self.state is _DONE

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Take the next chunk; return the events it completes (possibly none).

        Raises a :class:`~kamstrup382.errors.ProtocolError` at the first byte that breaks the
        protocol; the decoder is then spent (:class:`UsageError` if fed again).
        """
        state = self.state
        if state is _DATA and type(data) is bytes:
            # Mid-block, the common chunk (at 300 baud most are one byte) only extends the
            # block: what the DATA step does with a chunk of good bytes without ETX, without
            # the step machinery. Anything else takes the general path below.
            if not self.eight_bit:
                good = data if data.isascii() else None
            elif data.translate(None, _EVEN_PARITY):  # a byte fails even parity
                good = None
            else:
                good = data.translate(_STRIP_PARITY)
            if good is not None and ETX not in good and len(self._buf) + len(good) <= self._limit:
                self._buf += good  # (the DATA step's next search for ETX may start earlier)
                self._seen += len(good)
                return []
        if state is _FAILED:
            raise UsageError("the decoder failed earlier; start a new one for the next reply")
        data = bytes(data)
        base = self._seen
        self._seen += len(data)
        if state is _DONE:
            self.trailing += len(data)
            return []
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
                data = strip_parity(data if bad is None else data[:bad])
            elif not data.isascii():
                bad = next(i for i, b in enumerate(data) if b & 0x80)
                error = FramingError(
                    f"byte 0x{data[bad]:02x} has bit 7 set on a 7-bit line "
                    "(an 8N1 port or gateway needs 8-bit mode)",
                    offset=base + bad,
                )
                data = data[:bad]
            if bad is None and state is _WAIT_START and not self._buf and data[-2:-1] == b"\x03":
                telegram = _whole_reply(data, self.bcc_mode, base)
                if telegram is not None:
                    self.identification = telegram.identification
                    self.telegram = telegram
                    self.state = _DONE
                    return [
                        IdentificationReceived(telegram.identification, base),
                        TelegramReceived(telegram, self._seen),
                    ]
            self._buf += data
            events: list[Event] = []
            steps = self._STEPS
            while steps[self.state](self, events):
                pass
            if bad is not None:
                if self.state is not _DONE:
                    raise error
                self.trailing += self._seen - base - bad  # after the BCC: not looked at
        except Exception:
            self.state = _FAILED
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

    # -- steps: each consumes what it can and says whether another step may proceed --------

    def _wait_start(self, events: list[Event]) -> bool:
        index = self._buf.find(b"/", self._pos)
        if index < 0:  # nothing worth keeping: noise before the reply
            self.skipped += len(self._buf) - self._pos
            self._base += len(self._buf)
            self._buf.clear()
            self._pos = 0
            return False
        self.skipped += index - self._pos
        self._start = self._pos = index
        self.state = _IDENTIFICATION
        return True

    def _identification(self, events: list[Event]) -> bool:
        buf, start = self._buf, self._start
        end = buf.find(b"\n", self._pos)
        if (end if end >= 0 else len(buf)) - start > MAX_IDENTIFICATION_LINE:
            raise FramingError(
                f"identification line longer than {MAX_IDENTIFICATION_LINE} characters "
                "without CR LF",
                offset=self._base + start,
            )
        if end < 0:
            self._pos = len(buf)
            return False
        if buf[end - 1] != 0x0D:
            raise FramingError(
                "identification line ended by LF without CR", offset=self._base + end
            )
        content = bytes(buf[start : end - 1])
        self._pos = end + 1
        if content == _ECHO:  # an optical head echoing the request
            self.skipped += end + 1 - start
            self.state = _WAIT_START
            return True
        known = _IDENTIFICATIONS.get(content)
        if known is None:
            ident = parse_identification(content, offset=self._base + start)
            if len(_IDENTIFICATIONS) >= _IDENTIFICATION_CACHE:
                _IDENTIFICATIONS.clear()
            _IDENTIFICATIONS[content] = (ident, sum(content) + _CR + _LF + STX)
        else:
            ident = known[0]
        self.identification = ident
        events.append(IdentificationReceived(ident, self._base + start))
        self.state = _WAIT_STX
        return True

    def _wait_stx(self, events: list[Event]) -> bool:
        pos = self._pos
        if pos >= len(self._buf):
            return False
        if self._buf[pos] != STX:
            raise FramingError(
                f"expected STX after the identification line, got 0x{self._buf[pos]:02x}",
                offset=self._base + pos,
            )
        self._stx = pos
        self._limit = pos + MAX_DATA_BLOCK
        self._pos = pos + 1
        self.state = _DATA
        return True

    def _data(self, events: list[Event]) -> bool:
        index = self._buf.find(ETX, self._pos)
        if (index if index >= 0 else len(self._buf)) - self._stx > MAX_DATA_BLOCK:
            raise FramingError(
                f"data block longer than {MAX_DATA_BLOCK} bytes without ETX",
                offset=self._base + self._stx,
            )
        if index < 0:
            self._pos = len(self._buf)
            return False
        self._etx = index
        self._pos = index + 1
        self.state = _BCC
        return True

    def _bcc(self, events: list[Event]) -> bool:
        buf, etx = self._buf, self._etx
        if len(buf) <= etx + 1:
            return False
        start = self._start
        raw = bytes(buf[start : etx + 2])
        # the reply is whole now: the straight path checks it as it checks a captured one
        # (anything it does not take, the precise path decides, with the exact error)
        telegram = _whole_reply(raw, self.bcc_mode, self._base + start) or self._telegram(
            raw, etx - start
        )
        self.telegram = telegram
        self.trailing = len(buf) - etx - 2
        self.state = _DONE
        events.append(TelegramReceived(telegram, self._base + etx + 2))
        return False

    _STEPS: ClassVar[dict[DecoderState, Callable[[TelegramDecoder, list[Event]], bool]]] = {
        DecoderState.WAIT_START: _wait_start,
        DecoderState.IDENTIFICATION: _identification,
        DecoderState.WAIT_STX: _wait_stx,
        DecoderState.DATA: _data,
        DecoderState.BCC: _bcc,
    }

    def _telegram(self, raw: bytes, etx: int) -> Telegram:
        """The precise path: ``raw`` is the reply from its ``/``, ``etx`` the position of ETX."""
        stx = self._stx - self._start
        block = raw[stx + 1 : etx + 1]
        received = raw[etx + 1]
        offset = self._base + self._stx + 1
        algorithm = match_bcc(block, received, self.bcc_mode)
        if algorithm is None:
            sum7, xor = bcc_sum7(block), bcc_xor(block)
            expected = {
                BccMode.SUM7: f"sum7 0x{sum7:02x}",
                BccMode.XOR: f"xor 0x{xor:02x}",
                BccMode.AUTO: f"sum7 0x{sum7:02x} or xor 0x{xor:02x}",
            }[self.bcc_mode]
            raise BccError(
                f"BCC mismatch ({self.bcc_mode.value}): received 0x{received:02x}, "
                f"expected {expected}",
                received=received,
                sum7=sum7,
                xor=xor,
                offset=offset + len(block),
            )
        text = block[:-1]
        body = text.decode("ascii")
        layout = block_layout(text, body, offset)
        assert self.identification is not None
        return Telegram.checked(self.identification, body, algorithm, received, raw, offset, layout)


def decode_reply(
    data: bytes | bytearray | memoryview,
    *,
    bcc: BccMode = BccMode.SUM7,
    eight_bit: bool = False,
) -> Telegram:
    """Decode one whole captured reply; anything missing or extra is an error.

    Bytes before the identification's ``/`` (noise, an echo of the request) are skipped, as
    the incremental decoder does; bytes after the BCC are a :class:`FramingError`.
    """
    if not eight_bit and type(data) is bytes and data.isascii():
        mode = bcc if type(bcc) is BccMode else BccMode(bcc)
        telegram = _whole_reply(data, mode, 0)
        if telegram is not None:
            return telegram
    decoder = TelegramDecoder(bcc=bcc, eight_bit=eight_bit)
    decoder.feed(data)
    if decoder.telegram is None:
        raise decoder.incomplete_error()
    if decoder.trailing:
        raise FramingError(
            f"{decoder.trailing} bytes after the BCC", offset=decoder.bytes_seen - decoder.trailing
        )
    return decoder.telegram
