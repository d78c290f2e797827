"""The tiers of the fast path give what the precise parser gives, deterministically.

A block shape's register plan and data-set builder run generic code on first use and are
compiled to straight-line code on the second; the plan is picked by the block's address
characters (a bit mask over the block), not by its shape alone. The incremental decoder takes
a short cut for chunks in the middle of the block. Each of these is checked here against the
precise parser or the general path, with changing digits, on every tier.
"""

from __future__ import annotations

import inspect
from decimal import Decimal

import pytest

from kamstrup382.errors import FramingError, ParityError, UsageError
from kamstrup382.protocol import (
    MeterValues,
    Telegram,
    TelegramDecoder,
    add_parity,
    decode_reply,
)
from kamstrup382.protocol.dataset import _COMPILE_GROUPS, parse_data_block
from kamstrup382.protocol.decoder import clear_caches

from .helpers import (
    SPEC,
    SPEC_BODY,
    SPEC_IDENT_LINE,
    bytewise,
    outcome,
    reply,
    split_at,
)

OFFSET = len(SPEC_IDENT_LINE) + 1


def precise(body: str) -> tuple[dict[str, Decimal | str], tuple[object, ...]]:
    sets = parse_data_block(body, OFFSET)
    return {ds.name: ds.value for ds in sets if ds.name is not None}, sets


def redigit(body: str, n: int, *, addresses: bool = False) -> str:
    """``body`` with other digits in its values (and in its addresses too, if asked)."""
    out = []
    inside = False
    for i, c in enumerate(body):
        inside = (inside or c == "(") and c != ")"
        out.append(str((int(c) + n * 3 + i) % 10) if c.isdigit() and (inside or addresses) else c)
    return "".join(out)


#: shapes with what the fast path must get right: text and numeric values, decimal comma and
#: point, signs, empty values, several groups per address, a repeated address (the last value
#: counts, at the first position), unknown addresses, a value of a numeric register that is
#: not a number, the end marker on its own line
BODIES = [
    SPEC_BODY,
    "1.20(0000053*kWh)(0000001*kWh)\r\nC.1(12345678)\r\n1.6(000018.3*kW)!\r\n",
    "0.0(00054042)1.31(+0000482*h)\r\n1.26()\r\n1.20(-0,5)\r\n!\r\n",
    "1.20(0000001)\r\n1.31(0000002)\r\n1.20(0000003)!\r\n",
    "1.6*1(00,0*kW)\r\n1.20(1.0.0)\r\n1.26(7*)!\r\n".replace("*)", ")"),
    "(0001)(0002)\r\n1.6(12,34*kW)(56,78*kW)!\r\n",
]


@pytest.mark.parametrize("body", BODIES)
def test_every_tier_gives_the_precise_values(body: str) -> None:
    clear_caches()
    # precise path, then generic plan/builder, then compiled ones; then other addresses
    for n, addresses in [(0, False), (1, False), (2, False), (3, False), (4, True), (5, True)]:
        text = redigit(body, n, addresses=addresses)
        expected_registers, expected_sets = precise(text)
        telegram = decode_reply(reply(text))
        assert telegram.registers == expected_registers
        assert {k: str(v) for k, v in telegram.registers.items()} == {
            k: str(v) for k, v in expected_registers.items()
        }
        assert list(telegram.registers) == list(expected_registers)  # same order
        assert telegram.data_sets == expected_sets
        # and in the other order: data sets first
        again = decode_reply(reply(text))
        assert again.data_sets == expected_sets
        assert again.registers == expected_registers
    layout = telegram.layout
    assert layout is not None
    assert not inspect.ismethod(layout.build)  # compiled
    assert all(not inspect.ismethod(plan.read) for plan in layout.plans.values())


def test_one_shape_with_other_addresses_has_its_own_plan() -> None:
    clear_caches()
    # 1.20 and 1.31, 1.26 and 1.6*1 ... have one shape: the digits of the address decide
    first = "1.20(0000053*kWh)\r\n1.26(0000007)!\r\n"
    second = "1.31(0000053*kWh)\r\n1.20(0000007)!\r\n"
    third = "9.99(0000053*kWh)\r\n1.26(0000007)!\r\n"
    for _ in range(3):
        for body in (first, second, third):
            assert decode_reply(reply(body)).registers == precise(body)[0]
    assert decode_reply(reply(second)).registers == {
        "hour_counter": Decimal(53),
        "energy": Decimal(7),
    }
    assert decode_reply(reply(third)).registers == {"pulse_input": Decimal(7)}


def test_a_block_too_large_to_compile_stays_exact() -> None:
    clear_caches()
    count = _COMPILE_GROUPS + 10
    body = "".join(f"C.{i}({i:07d}*kWh)\r\n" for i in range(count)) + "1.20(0000001)!\r\n"
    for n in range(3):
        text = redigit(body, n)
        registers, sets = precise(text)
        telegram = decode_reply(reply(text))
        assert telegram.data_sets == sets
        assert telegram.registers == registers
    assert telegram.layout is not None
    assert inspect.ismethod(telegram.layout.build)  # the generic builder


@pytest.mark.parametrize("eight_bit", [False, True])
def test_fed_byte_by_byte_equals_whole(eight_bit: bool) -> None:
    data = add_parity(SPEC) if eight_bit else SPEC
    whole_result = outcome([data], eight_bit=eight_bit)
    assert whole_result[0] == "ok"
    assert outcome(bytewise(data), eight_bit=eight_bit) == whole_result
    assert outcome(split_at(data, range(0, len(data), 7)), eight_bit=eight_bit) == whole_result


def test_mid_block_chunks_with_a_parity_error_fail_at_that_byte() -> None:
    eight = add_parity(SPEC)
    for index in range(OFFSET, len(eight)):
        for bit in range(8):
            bad = bytearray(eight)
            bad[index] ^= 1 << bit
            decoder = TelegramDecoder(eight_bit=True)
            with pytest.raises(ParityError) as info:
                for start in range(0, len(bad), 3):
                    decoder.feed(bytes(bad[start : start + 3]))
            assert info.value.offset == index


def test_mid_block_chunk_with_bit_7_on_a_seven_bit_line_fails_at_that_byte() -> None:
    for index in range(OFFSET, len(SPEC)):
        bad = bytearray(SPEC)
        bad[index] |= 0x80
        decoder = TelegramDecoder()
        with pytest.raises(FramingError) as info:
            for start in range(len(bad)):
                decoder.feed(bytes(bad[start : start + 1]))
        assert info.value.offset == index


#: blocks of all eight registers whose values the shape does not vouch for: a value wider
#: than its register (valid or not, by its digits), signed, or with an extra decimal
UNVOUCHED = [
    SPEC_BODY.replace("1.20(0000053", "1.20(00000053"),  # 8 digits, fits: 53
    SPEC_BODY.replace("1.20(0000053", "1.20(12345678"),  # 8 digits, too large
    SPEC_BODY.replace("1.20(0000053", "1.20(+000053"),  # signed
    SPEC_BODY.replace("1.6(000018,3", "1.6(00018,30"),  # two decimals, the last a zero
    SPEC_BODY.replace("1.6(000018,3", "1.6(00018,31"),  # two decimals
    SPEC_BODY.replace("0.0(00054042)", "0.0(0054042)"),  # customer number of 7 digits
]


def checked_values(telegram: Telegram) -> MeterValues | str:
    """What the validating constructor makes of the telegram's registers (or its error)."""
    try:
        return MeterValues(**telegram.registers)  # type: ignore[arg-type]
    except UsageError as error:
        return f"UsageError: {error}"


def meter_values(telegram: Telegram) -> MeterValues | str:
    try:
        return telegram.meter_values()
    except UsageError as error:
        return f"UsageError: {error}"


@pytest.mark.parametrize("body", [SPEC_BODY, *UNVOUCHED])
def test_meter_values_on_every_tier_equal_the_validating_constructor(body: str) -> None:
    clear_caches()
    for n in range(4):  # precise, generic plan, compiled plan, compiled again
        telegram = decode_reply(reply(redigit(body, n)))
        assert meter_values(telegram) == checked_values(telegram)


def test_only_a_shape_within_every_register_width_skips_the_checks() -> None:
    clear_caches()
    telegram = decode_reply(reply(SPEC_BODY))
    values = telegram.meter_values()
    assert telegram.__dict__["_fits"] is True
    assert values == checked_values(telegram)
    assert all(type(v) is Decimal for k, v in values.as_dict().items() if k != "customer_number")
    for body in UNVOUCHED:
        assert body != SPEC_BODY
        telegram = decode_reply(reply(body))
        meter_values(telegram)
        assert telegram.__dict__["_fits"] is False, body
    # one register missing: never vouched for, and the error names it
    telegram = decode_reply(reply(SPEC_BODY.replace("1.26(", "1.27(")))
    with pytest.raises(UsageError, match="pulse_input"):
        telegram.meter_values()
    assert telegram.__dict__["_fits"] is False
