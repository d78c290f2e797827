"""Benchmark: decoding Kamstrup 382 replies, side by side with PyPI ``iec62056-21`` (0.0.2).

    python3 bench/bench_decode.py                # about 10 s
    python3 bench/bench_decode.py --seconds 60   # longer, steadier figures

``iec62056-21`` checks the BCC as the IEC XOR only, so it is given the same telegram with an
XOR BCC (it rejects the meter's own ``>``); we decode the meter's form (7-bit sum). Its parse
is what its client does with a reply: ``IdentificationMessage.from_bytes`` on the
identification line and ``AnswerDataMessage.from_bytes`` on the rest, then ``.data`` (a list
of data sets whose values are strings). Ours, all through the one decoder path:

- ``decode``: ``decode_reply`` (parity/bit 7, framing, BCC, identification with type number,
  the grammar of every line, all checked);
- ``typed decode``: and the register values as exact ``Decimal`` (text for the customer
  number), ``telegram.registers``: the goal is at least twice ``iec62056-21``'s rate;
- ``decode + meter values``: and ``telegram.meter_values()`` (every register checked
  against its width by ``MeterValues``), what the collector stores;
- ``decode + data sets``: and every data set as a ``DataSet`` object (address, value texts,
  units, line), the closest to what ``iec62056-21`` returns;
- ``fed in 8 chunks``: typed decode through ``TelegramDecoder.feed`` in 8 pieces, as a reader
  on a fast link would;
- ``fed byte by byte``: the same, one byte per chunk, as a reader on the 300 baud line
  receives it (a byte every 33 ms: the reader feeds each as it arrives).

Each "same" case decodes the specification's example again and again; each "varying" case
cycles through 2000 different replies (random register values: different digits, different
BCCs), since a real meter's values change between readouts. Cases run interleaved in rounds
and the best round counts, for both sides alike. A round is timed in CPU time of this process
(``time.process_time``): on a machine shared with other work, the time the process waits for a
core is not the decoder's, and twenty short rounds give each case twenty chances at a quiet
moment (three long ones gave 1.5x and 2.2x for the same code in runs a minute apart). The
chunked cases get their chunks ready made (cutting them is the transport's work, not the
decoder's).

One readout of this telegram takes at least 5.75 s on the 300 baud line (NOTES.md): decoding
is not what limits a reader. The last line puts the byte-by-byte decode against the time the
line takes to carry the reply (7E1: 10 bits a character, 167 characters).
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from iec62056_21 import messages

from kamstrup382.protocol import (
    BccAlgorithm,
    Identification,
    MeterValues,
    TelegramDecoder,
    TypeNumber,
    decode_reply,
    encode_reply,
)

SPEC = (
    Path(__file__).resolve().parent.parent / "src/kamstrup382/data/spec-example.bin"
).read_bytes()
POOL = 2000
#: the meter's optical port: 300 baud, 7E1 (start, 7 data, parity, stop bits)
LINE_BAUD = 300
LINE_BITS_PER_CHAR = 10


def spec_pair() -> tuple[bytes, bytes]:
    telegram = decode_reply(SPEC)
    xor = encode_reply(telegram.identification, telegram.meter_values(), bcc=BccAlgorithm.XOR)
    assert xor[:-1] == SPEC[:-1] and xor[-1] == 0x12
    return SPEC, xor


def varying_pairs(count: int, seed: int = 382) -> tuple[list[bytes], list[bytes]]:
    rnd = random.Random(seed)
    ident = Identification.for_type_number(TypeNumber())
    ours, theirs = [], []
    for _ in range(count):
        tariff_1, tariff_2 = rnd.randrange(5 * 10**6), rnd.randrange(4 * 10**6)
        values = MeterValues(
            customer_number=f"{rnd.randrange(10**8):08d}",
            energy=Decimal(tariff_1 + tariff_2),
            tariff_1=Decimal(tariff_1),
            tariff_2=Decimal(tariff_2),
            hour_counter=Decimal(rnd.randrange(10**6)),
            pulse_input=Decimal(rnd.randrange(10**5)),
            actual_peak=Decimal(rnd.randrange(10**4)).scaleb(-1),
            last_month_peak=Decimal(rnd.randrange(10**4)).scaleb(-1),
        )
        ours.append(encode_reply(ident, values))
        theirs.append(encode_reply(ident, values, bcc=BccAlgorithm.XOR))
    assert len(set(ours)) == count
    return ours, theirs


def iec_parse(data: bytes) -> list[messages.DataSet]:
    split = data.index(b"\n") + 1
    ident = messages.IdentificationMessage.from_bytes(data[:split])
    answer = messages.AnswerDataMessage.from_bytes(data[split:])
    assert ident.manufacturer == "KAM"
    return answer.data  # type: ignore[no-any-return]


def ours_decode(data: bytes) -> object:
    return decode_reply(data)


def ours_registers(data: bytes) -> object:
    return decode_reply(data).registers


def ours_meter_values(data: bytes) -> object:
    return decode_reply(data).meter_values()


def ours_data_sets(data: bytes) -> object:
    return decode_reply(data).data_sets


def in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def eight_chunks(data: bytes) -> list[bytes]:
    return in_chunks(data, len(data) // 8 + 1)


def ours_chunked(chunks: list[bytes]) -> object:
    decoder = TelegramDecoder()
    for chunk in chunks:
        decoder.feed(chunk)
    assert decoder.telegram is not None
    return decoder.telegram.registers


@dataclass
class Case:
    name: str
    parse: Callable[[Any], object]
    inputs: Sequence[Any]  # replies, or replies cut in chunks
    iec: bool = False
    best: float = 0.0  # telegrams per second, best round

    def round(self, seconds: float) -> None:
        parse, inputs, count = self.parse, self.inputs, len(self.inputs)
        done = 0
        start = time.process_time()
        deadline = start + seconds
        while True:
            for index in range(200):
                parse(inputs[(done + index) % count])
            done += 200
            now = time.process_time()
            if now >= deadline:
                break
        self.best = max(self.best, done / (now - start))


def check(ours: Sequence[bytes], theirs: Sequence[bytes]) -> None:
    """Both sides read the same values from the same readings (not only that nothing raised).

    Ours alike however fed: whole, in 8 chunks, byte by byte.
    """
    for our_data, their_data in zip(ours, theirs, strict=True):
        registers = decode_reply(our_data).registers
        assert ours_chunked(eight_chunks(our_data)) == registers
        assert ours_chunked(in_chunks(our_data, 1)) == registers
        their_sets = iec_parse(their_data)
        assert their_sets[0].value == registers["customer_number"]
        their_numbers = [Decimal(d.value.replace(",", ".")) for d in their_sets[1:]]
        assert their_numbers == list(registers.values())[1:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="total time, about")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)

    ours_spec, iec_spec = spec_pair()
    ours_pool, iec_pool = varying_pairs(POOL)
    bytewise_spec = in_chunks(ours_spec, 1)
    cases = [
        Case("iec62056-21 parse, same telegram (XOR)", iec_parse, [iec_spec], iec=True),
        Case("ours decode, same", ours_decode, [ours_spec]),
        Case("ours typed decode (registers), same", ours_registers, [ours_spec]),
        Case("ours decode + meter values, same", ours_meter_values, [ours_spec]),
        Case("ours decode + data sets, same", ours_data_sets, [ours_spec]),
        Case("ours typed, fed in 8 chunks, same", ours_chunked, [eight_chunks(ours_spec)]),
        Case("ours typed, fed byte by byte, same", ours_chunked, [bytewise_spec]),
        Case("iec62056-21 parse, varying (XOR)", iec_parse, iec_pool, iec=True),
        Case("ours decode, varying", ours_decode, ours_pool),
        Case("ours typed decode (registers), varying", ours_registers, ours_pool),
        Case("ours decode + meter values, varying", ours_meter_values, ours_pool),
        Case("ours decode + data sets, varying", ours_data_sets, ours_pool),
        Case(
            "ours typed, fed in 8 chunks, varying",
            ours_chunked,
            [eight_chunks(data) for data in ours_pool],
        ),
        Case(
            "ours typed, fed byte by byte, varying",
            ours_chunked,
            [in_chunks(data, 1) for data in ours_pool],
        ),
    ]
    check([ours_spec, *ours_pool], [iec_spec, *iec_pool])
    per_round = args.seconds / args.rounds / len(cases)
    for _ in range(args.rounds):
        for case in cases:
            case.round(per_round)

    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{args.rounds} rounds x {per_round:.3f} s per case (CPU time), best round"
    )
    iec_same = next(c.best for c in cases if c.iec and "same" in c.name)
    iec_varying = next(c.best for c in cases if c.iec and "varying" in c.name)
    width = max(len(c.name) for c in cases)
    print(f"{'case':<{width}}  {'telegrams/s':>12}  {'x iec62056-21':>13}")
    for case in cases:
        reference = iec_varying if "varying" in case.name else iec_same
        print(f"{case.name:<{width}}  {case.best:>12,.0f}  {case.best / reference:>12.1f}x")
    typed = next(c.best for c in cases if c.name == "ours typed decode (registers), same")
    verdict = "met" if typed >= 2 * iec_same else "NOT met"
    print(f"goal typed decode >= 2x iec62056-21 (spec example): {typed / iec_same:.2f}x, {verdict}")
    bytewise = next(c.best for c in cases if c.name == "ours typed, fed byte by byte, same")
    line_time = len(ours_spec) * LINE_BITS_PER_CHAR / LINE_BAUD
    cpu = 1 / bytewise
    print(
        f"byte by byte at line rate: {cpu * 1e6:.0f} us of CPU per telegram, "
        f"{cpu / line_time:.4%} of the {line_time:.2f} s the {LINE_BAUD} baud line takes "
        f"to carry its {len(ours_spec)} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
