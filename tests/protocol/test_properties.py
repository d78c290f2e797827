"""Property tests: round trips, arbitrary input, chunking invariance, registers == data sets."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from kamstrup382.errors import Kamstrup382Error
from kamstrup382.protocol import (
    BccAlgorithm,
    BccMode,
    EndMarker,
    Identification,
    MeterValues,
    TypeNumber,
    add_parity,
    compute_bcc,
    decode_reply,
    encode_reply,
)
from kamstrup382.protocol.dataset import parse_data_block
from kamstrup382.protocol.identification import ACCURACY_CLASSES, CURRENT_CODES, PHASES

from .helpers import SPEC_IDENT_LINE, bytewise, outcome, split_at, whole

#: Per example: far above what any example takes (milliseconds), so a loaded CI machine never
#: fails on time, while a decoder that loops or goes quadratic still fails (pytest-timeout
#: stops a true hang).
DEADLINE = timedelta(seconds=5)

# -- round trips ------------------------------------------------------------------------------


def counters() -> st.SearchStrategy[Decimal]:
    return st.integers(0, 10**7 - 1).map(Decimal)


def peaks() -> st.SearchStrategy[Decimal]:
    return st.integers(0, 10**7 - 1).map(lambda n: Decimal(f"{n // 10}.{n % 10}"))


meter_values = st.builds(
    MeterValues,
    customer_number=st.text("0123456789", min_size=8, max_size=8),
    energy=counters(),
    tariff_1=counters(),
    tariff_2=counters(),
    hour_counter=counters(),
    pulse_input=counters(),
    actual_peak=peaks(),
    last_month_peak=peaks(),
)
type_numbers = st.builds(
    TypeNumber,
    phases=st.sampled_from(sorted(PHASES)),
    current_code=st.sampled_from(sorted(CURRENT_CODES)),
    accuracy_class=st.sampled_from(sorted(ACCURACY_CLASSES)),
    module=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
    label=st.text("0123456789", min_size=2, max_size=2),
)


@settings(deadline=DEADLINE)
@given(
    meter_values,
    type_numbers,
    st.sampled_from(list(BccAlgorithm)),
    st.sampled_from(list(EndMarker)),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_random_readings_round_trip(  # noqa: PLR0917 - hypothesis arguments
    values: MeterValues,
    type_number: TypeNumber,
    bcc: BccAlgorithm,
    end_marker: EndMarker,
    eight_bit: bool,
    rnd: random.Random,
) -> None:
    ident = Identification.for_type_number(type_number)
    data = encode_reply(ident, values, bcc=bcc, end_marker=end_marker, eight_bit=eight_bit)
    for mode in (BccMode(bcc.value), BccMode.AUTO):
        telegram = decode_reply(data, bcc=mode, eight_bit=eight_bit)
        assert telegram.meter_values() == values
        # exactly the same digits, not only equal numbers (18.3 stays 18.3, 0.0 stays 0.0)
        assert {k: str(v) for k, v in telegram.registers.items()} == {
            k: str(v) for k, v in values.present().items()
        }
        assert telegram.identification == ident
        block = telegram.raw[telegram.raw.index(b"\x02") + 1 : -1]
        if mode is BccMode.AUTO:  # either may match by chance; the one reported does
            assert compute_bcc(block, telegram.bcc_algorithm) == telegram.bcc
        else:
            assert telegram.bcc_algorithm is bcc
    points = [rnd.randrange(len(data) + 1) for _ in range(5)]
    mode = BccMode(bcc.value)
    split = outcome(split_at(data, points), bcc=mode, eight_bit=eight_bit)
    assert split[2] == decode_reply(data, bcc=mode, eight_bit=eight_bit)


# -- arbitrary input --------------------------------------------------------------------------

FRAGMENTS = [
    b"/", b"\r\n", b"\r", b"\n", b"\x02", b"\x03", b"(", b")", b"*", b"!", b",", b".",
    b"/?!\r\n", SPEC_IDENT_LINE, b"/KAM 685-", b"382-OK-15", b"685-492-OK-15", b"/ISk5",
    b"0.0(00054042)", b"1.20(0000053*kWh)", b"1.6*1(000000,0)!", b"1.6(000018,3*kW)", b"()",
    b"\x80", b"\xff", b"0", b"9", b"kWh",
]  # fmt: skip
fragments = st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=6))


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    """Mostly reply-like byte strings: often a correct BCC, so the grammar is reached."""
    noise = draw(st.lists(fragments, max_size=3))
    ident = draw(st.one_of(st.just(SPEC_IDENT_LINE), st.lists(fragments, max_size=4).map(b"".join)))
    stx = draw(st.sampled_from([b"\x02", b"\x02", b"", b"x"]))
    body = b"".join(draw(st.lists(fragments, max_size=12)))
    if draw(st.booleans()):
        body += b"!\r\n"
    block = body + b"\x03"
    bcc_choice = draw(st.sampled_from(["sum7", "xor", "random"]))
    if bcc_choice == "random":
        bcc = draw(st.integers(0, 255))
    else:
        bcc = compute_bcc(block, BccAlgorithm(bcc_choice))
    tail = draw(st.sampled_from([b"", b"", b"junk"]))
    return b"".join(noise) + ident + stx + block + bytes((bcc,)) + tail


@settings(max_examples=300, deadline=DEADLINE)
@given(
    st.one_of(replies(), st.binary(max_size=300)),
    st.lists(st.integers(0, 400), max_size=12),
    st.sampled_from(list(BccMode)),
    st.sampled_from(["7-bit", "8-bit", "8-bit raw"]),
)
def test_arbitrary_bytes_in_any_chunks_raise_only_our_errors_and_agree(
    data: bytes, points: list[int], mode: BccMode, form: str
) -> None:
    eight_bit = form != "7-bit"
    if form == "8-bit":  # with parity bits set: the grammar is reached
        data = add_parity(data)
    results = [
        outcome(chunks, bcc=mode, eight_bit=eight_bit)
        for chunks in (whole(data), bytewise(data), split_at(data, points))
    ]
    assert results[1] == results[0]
    assert results[2] == results[0]
    try:
        telegram = decode_reply(data, bcc=mode, eight_bit=eight_bit)
    except Kamstrup382Error:
        return
    # a decoded telegram is entirely well formed: its parts never raise later
    assert telegram.data_sets == parse_data_block(telegram.data_block, telegram.block_offset)
    assert isinstance(telegram.registers, dict)


# -- the register values against the data sets of the line-by-line parser ---------------------

values = st.text("0123456789,.+-", max_size=9)
units = st.one_of(st.none(), st.sampled_from(["kWh", "kW", "h", "MWh", "V"]))
addresses = st.one_of(
    st.sampled_from(["0.0", "1.20", "1.20.1", "1.20.2", "1.31", "1.26", "1.6", "1.6*1", "", "C.1"]),
    st.text("0123456789.*", max_size=7),
)
groups = st.tuples(addresses, st.lists(st.tuples(values, units), min_size=1, max_size=3))


def line_text(sets: list[tuple[str, list[tuple[str, str | None]]]]) -> str:
    return "".join(
        address + "".join(f"({v}*{u})" if u else f"({v})" for v, u in gs) for address, gs in sets
    )


@st.composite
def blocks(draw: st.DrawFn) -> str:
    lines = [
        line_text(draw(st.lists(groups, min_size=1, max_size=3)))
        for _ in range(draw(st.integers(1, 6)))
    ]
    if draw(st.booleans()):
        lines[-1] += "!"
    else:
        lines.append("!")
    return "".join(line + "\r\n" for line in lines)


def redigit(body: str, seed: int) -> str:
    digits = "0123456789"
    return "".join(
        digits[(seed * 7 + index * 3 + int(c)) % 10] if c.isdigit() else c
        for index, c in enumerate(body)
    )


def precise_registers(body: str, offset: int) -> dict[str, Decimal | str]:
    return {ds.name: ds.value for ds in parse_data_block(body, offset) if ds.name is not None}


def wrap(body: str) -> bytes:
    block = body.encode("ascii") + b"\x03"
    return SPEC_IDENT_LINE + b"\x02" + block + bytes((compute_bcc(block, BccAlgorithm.SUM7),))


@settings(max_examples=300, deadline=DEADLINE)
@given(blocks(), st.lists(st.integers(0, 10**6), min_size=1, max_size=4))
def test_registers_and_data_sets_are_what_the_line_parser_gives(
    body: str, seeds: list[int]
) -> None:
    offset = len(SPEC_IDENT_LINE) + 1
    # the registers are read by one regular expression over the block, the data sets by the
    # walk line by line: every block (and the same with other digits) gives the same values
    for text in [body, *(redigit(body, s) for s in seeds)]:
        for chunks in (whole(wrap(text)), bytewise(wrap(text))):
            result = outcome(chunks)
            assert result[0] == "ok"
            telegram = result[2]
            assert result[3] == parse_data_block(text, offset)
            assert telegram.registers == precise_registers(text, offset)
            assert {k: str(v) for k, v in telegram.registers.items()} == {
                k: str(v) for k, v in precise_registers(text, offset).items()
            }
        # a fresh telegram asked for its registers first, then its data sets
        telegram = decode_reply(wrap(text))
        assert telegram.registers == precise_registers(text, offset)
        assert telegram.data_sets == parse_data_block(text, offset)
