"""Shared helpers of the protocol tests: building replies and feeding them in pieces."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from kamstrup382.errors import Kamstrup382Error
from kamstrup382.protocol import (
    ETX,
    STX,
    BccAlgorithm,
    BccMode,
    IdentificationReceived,
    TelegramDecoder,
    TelegramReceived,
    compute_bcc,
)

DATA = Path(__file__).resolve().parent.parent / "data"
#: The specification's example reply, byte-exact (7-bit form, 167 bytes).
SPEC = (DATA / "spec-example.bin").read_bytes()
SPEC_IDENT_LINE = b"/KAM 685-382-OK-15\r\n"
#: Its data block as the meter prints it (between STX and ETX).
SPEC_BODY = (
    "0.0(00054042)\r\n"
    "1.20(0000053*kWh)\r\n"
    "1.20.1(0000033*kWh)\r\n"
    "1.20.2(0000020*kWh)\r\n"
    "1.31(0000482*h)\r\n"
    "1.26(0000000)\r\n"
    "1.6(000018,3*kW)\r\n"
    "1.6*1(000000,0)!\r\n"
)


def reply(
    body: str,
    *,
    ident: bytes = SPEC_IDENT_LINE,
    bcc: BccAlgorithm = BccAlgorithm.SUM7,
) -> bytes:
    """A whole reply around ``body`` (the text between STX and ETX), with a correct BCC."""
    block = body.encode("ascii") + bytes((ETX,))
    return ident + bytes((STX,)) + block + bytes((compute_bcc(block, bcc),))


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


def outcome(
    chunks: Sequence[bytes], *, bcc: BccMode = BccMode.SUM7, eight_bit: bool = False
) -> tuple[Any, ...]:
    """Everything observable about feeding ``chunks`` to a fresh decoder, for comparisons.

    ``("ok", events, telegram, trailing, bytes_seen)`` or ``("error", type, str, offset, line)``.
    Only the project's own errors are caught: anything else fails the test that calls this.
    """
    decoder = TelegramDecoder(bcc=bcc, eight_bit=eight_bit)
    events: list[tuple[Any, ...]] = []
    try:
        for chunk in chunks:
            for event in decoder.feed(chunk):
                if isinstance(event, IdentificationReceived):
                    events.append(("identification", event.identification, event.offset))
                else:
                    assert isinstance(event, TelegramReceived)
                    events.append(("telegram", event.telegram, event.bytes_seen))
    except Kamstrup382Error as exc:
        return (
            "error",
            type(exc),
            str(exc),
            getattr(exc, "offset", None),
            getattr(exc, "line", None),
        )
    telegram = decoder.telegram
    data_sets = None if telegram is None else telegram.data_sets
    return ("ok", events, telegram, data_sets, decoder.trailing, decoder.bytes_seen, decoder.state)
