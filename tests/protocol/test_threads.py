"""Decoding from several threads at once gives exact results.

A smoke test, not a proof: a race window of a few bytecodes is rarely hit even with a 1 us
switch interval. Race freedom comes from construction: a decoder keeps its state in itself,
and the protocol core has no module-wide state that decoding writes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from kamstrup382.protocol import decode_reply
from kamstrup382.protocol.dataset import parse_data_block

from .helpers import SPEC_IDENT_LINE, reply

#: four block shapes (different widths and units), each decoded with changing digits
SHAPES = [
    "1.20({a:07d}*kWh)\r\n1.31({b:07d}*h)!\r\n",
    "1.20({a:05d}*kWh)\r\n1.6({b:06d},{c}*kW)!\r\n",
    "0.0({a:08d})\r\n1.26({b:07d})\r\n!\r\n",
    "1.6*1({b:04d}.{c}*kW)\r\n1.20({a:09d})!\r\n",
]


@pytest.fixture
def fast_switching() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_decodes_of_many_shapes_are_exact() -> None:
    offset = len(SPEC_IDENT_LINE) + 1
    failures: list[str] = []

    def work(worker: int) -> None:
        for n in range(1500):
            shape = SHAPES[(n + worker) % len(SHAPES)]
            body = shape.format(a=n * 37 + worker, b=n * 11 % 9999, c=n % 10)
            telegram = decode_reply(reply(body))
            expected = {
                ds.name: ds.value for ds in parse_data_block(body, offset) if ds.name is not None
            }
            if telegram.registers != expected or telegram.data_sets != parse_data_block(
                body, offset
            ):
                failures.append(f"worker {worker}: {body!r} gave {telegram.registers}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert decode_reply(reply(SHAPES[0].format(a=1, b=2, c=3))).registers == {
        "energy": Decimal(1),
        "hour_counter": Decimal(2),
    }
