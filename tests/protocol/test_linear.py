"""Feeding a reply byte by byte costs work linear in its length (no re-scan per byte).

The work is counted, not timed: the bytes the decoder's buffer searches pass over, and the
function calls the decoder makes (C functions included). A decoder that searched its whole
buffer again on every byte would do 64 times the work for 8 times the input; this one does 8.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest

from kamstrup382.protocol import TelegramDecoder, add_parity
from kamstrup382.protocol import decoder as decoder_module

from .helpers import reply


class CountingBuffer(bytearray):
    """A bytearray that counts the bytes its searches pass over."""

    scanned = 0

    def find(self, sub: Any, start: Any = None, end: Any = None) -> int:
        begin = 0 if start is None else start
        stop = len(self) if end is None else end
        found = super().find(sub, begin, stop)
        CountingBuffer.scanned += (stop if found < 0 else found + 1) - begin
        return found


def body(lines: int) -> str:
    return "".join(f"1.8.{n}({n:07d}*kWh)\r\n" for n in range(lines)) + "1.20(0000053*kWh)!\r\n"


def work(data: bytes, *, eight_bit: bool) -> int:
    """Bytes searched plus calls made while feeding ``data`` one byte at a time."""
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    CountingBuffer.scanned = 0
    decoder = TelegramDecoder(eight_bit=eight_bit, max_reply=len(data))  # a long reply
    chunks = [data[i : i + 1] for i in range(len(data))]
    sys.setprofile(count)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    finally:
        sys.setprofile(None)
    assert decoder.done and decoder.telegram is not None
    return CountingBuffer.scanned + calls


@pytest.mark.parametrize("eight_bit", [False, True])
def test_byte_by_byte_work_grows_linearly(monkeypatch: pytest.MonkeyPatch, eight_bit: bool) -> None:
    monkeypatch.setattr(decoder_module, "bytearray", CountingBuffer, raising=False)
    small, large = reply(body(50)), reply(body(400))
    if eight_bit:
        small, large = add_parity(small), add_parity(large)
    ratio = len(large) / len(small)
    assert 7.5 < ratio < 8.5
    per_byte_small = work(small, eight_bit=eight_bit) / len(small)
    per_byte_large = work(large, eight_bit=eight_bit) / len(large)
    assert CountingBuffer.scanned > 0  # the searches were counted
    assert per_byte_large < 1.25 * per_byte_small
