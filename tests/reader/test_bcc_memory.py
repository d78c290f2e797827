"""BCC ``auto`` across readouts, and the plausibility of each telegram, in the sans-IO session.

A readout here is what one ``read()`` does: :meth:`Session.begin`, attempts until one is
concluded or the retry policy gives up (:meth:`Session.failed`). The readers do exactly that
(tests/reader/test_plausible.py runs the same rules against the emulator).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from kamstrup382.emulator.faults import apply_faults
from kamstrup382.errors import BccError, ImplausibleError, Kamstrup382Error, UsageError
from kamstrup382.protocol import BccAlgorithm, BccMode, Telegram, decode_reply
from kamstrup382.reader import BccCertainty, BccMemory, Reading, Session, Timing
from kamstrup382.reader.port import LineMode
from tests.protocol.helpers import SPEC_BODY, reply
from tests.reader.peer import EXAMPLE

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMING = Timing(answer_timeout=0.6, answer_margin=0.3)
XOR = reply(SPEC_BODY, bcc=BccAlgorithm.XOR)
#: Two digits of the energy swapped: the BCC (either) still matches, the sum rule does not.
SWAPPED = SPEC_BODY.replace("1.20(0000053*kWh)", "1.20(0000035*kWh)")


def with_xor(data: bytes) -> bytes:
    return apply_faults(data, ["xor"], random.Random(0), eight_bit=False).reply


def session(**options: object) -> Session:
    return Session(line=LineMode.SEVEN_E_ONE, timing=TIMING, **options)  # type: ignore[arg-type]


def readout(
    s: Session, *replies: bytes, accept: Callable[[Reading], None] | None = None
) -> Reading | Kamstrup382Error:
    """One readout whose attempts receive ``replies`` in turn (as many attempts as replies,
    as the retry policy allows): its reading, or the error the last attempt raised."""
    s.begin()
    error: Kamstrup382Error | None = None
    for attempt, data in enumerate(replies, start=1):
        attempt_readout = s.readout()
        attempt_readout.sent(100.0, T0)
        try:
            assert attempt_readout.receive(data, 100.2, T0 + timedelta(seconds=0.2))
            return s.conclude(attempt_readout, "p", attempt, accept)
        except Kamstrup382Error as caught:
            error = caught
            if s.next_delay(caught, attempt) is None:
                break
    s.failed()
    assert error is not None
    return error


def algorithm(outcome: Reading | Kamstrup382Error) -> BccAlgorithm:
    assert isinstance(outcome, Reading), outcome
    return outcome.bcc_algorithm


def test_the_example_is_the_spec_reply() -> None:
    assert reply(SPEC_BODY) == EXAMPLE
    assert with_xor(EXAMPLE) == XOR


def test_an_implausible_telegram_fails_its_attempt_with_its_bytes() -> None:
    s = session()
    damaged = reply(SWAPPED)
    outcome = readout(s, damaged, EXAMPLE)
    assert isinstance(outcome, Reading) and outcome.attempts == 2  # retried, then the truth
    assert outcome.registers["energy"] == 53
    outcome = readout(s, damaged, damaged, damaged)
    assert isinstance(outcome, ImplausibleError)
    assert (outcome.rule, outcome.raw) == ("sum", damaged)


def test_a_missing_register_is_implausible_and_retried() -> None:
    short = reply(SPEC_BODY.replace("1.26(0000000)\r\n", ""))
    outcome = readout(session(), short, short, short)
    assert isinstance(outcome, ImplausibleError)
    assert (outcome.rule, outcome.register, outcome.raw) == ("missing", "1.26", short)
    assert session().next_delay(outcome, 1) is not None


def test_the_callers_check_fails_the_attempt_inside_the_retries() -> None:
    seen: list[int] = []

    def accept(reading: Reading) -> None:
        seen.append(reading.attempts)
        if reading.attempts < 2:
            raise ImplausibleError("history says no", rule="counter_down", register="1.20")

    outcome = readout(session(), EXAMPLE, EXAMPLE, EXAMPLE, accept=accept)
    assert isinstance(outcome, Reading) and outcome.attempts == 2
    assert seen == [1, 2]

    def never(reading: Reading) -> None:
        raise ImplausibleError("history says no", rule="counter_down", register="1.20")

    outcome = readout(session(), EXAMPLE, EXAMPLE, EXAMPLE, accept=never)
    assert isinstance(outcome, ImplausibleError) and outcome.raw == EXAMPLE


def test_auto_learns_the_first_algorithm_and_refuses_the_other_within_a_readout() -> None:
    s = session()
    assert s.bcc_memory == BccMemory()
    assert algorithm(readout(s, EXAMPLE)) is BccAlgorithm.SUM7
    assert s.bcc_memory == BccMemory(BccAlgorithm.SUM7, None, confirmed=False)
    # one damaged telegram matching the XOR, then the meter's own: the XOR one never passes
    outcome = readout(s, XOR, EXAMPLE)
    assert algorithm(outcome) is BccAlgorithm.SUM7 and isinstance(outcome, Reading)
    assert outcome.attempts == 2
    # every attempt of a readout matching the XOR: refused, however many
    outcome = readout(s, XOR, XOR, XOR)
    assert isinstance(outcome, BccError) and "this meter's sum7" in str(outcome)
    assert s.bcc_memory.suspect is BccAlgorithm.XOR
    assert s.bcc_algorithm is BccAlgorithm.SUM7


def test_the_algorithm_changes_after_two_consecutive_readouts_agree() -> None:
    s = session(bcc_hint="sum7")
    assert isinstance(readout(s, XOR, XOR, XOR), BccError)  # readout 1: suspected
    assert s.bcc_algorithm is BccAlgorithm.SUM7
    reading = readout(s, XOR)  # readout 2: followed
    assert algorithm(reading) is BccAlgorithm.XOR
    assert isinstance(reading, Reading) and reading.bcc_certainty is BccCertainty.CONFIRMED
    assert s.bcc_memory == BccMemory(BccAlgorithm.XOR, None, confirmed=True)


def test_a_readout_between_breaks_the_suspicion() -> None:
    s = session(bcc_hint="sum7")
    assert isinstance(readout(s, XOR, XOR, XOR), BccError)
    assert algorithm(readout(s, EXAMPLE)) is BccAlgorithm.SUM7  # the meter's own again
    assert s.bcc_memory.suspect is None
    assert isinstance(readout(s, XOR, XOR, XOR), BccError)  # starts over
    # a readout that ends without any telegram (a timeout) breaks it too
    s.begin()
    s.failed()
    assert s.bcc_memory.suspect is None
    assert isinstance(readout(s, XOR, XOR, XOR), BccError)
    assert s.bcc_algorithm is BccAlgorithm.SUM7


def test_an_implausible_telegram_raises_no_suspicion() -> None:
    s = session(bcc_hint="sum7")
    swapped_xor = reply(SWAPPED, bcc=BccAlgorithm.XOR)
    outcome = readout(s, swapped_xor, swapped_xor, swapped_xor)
    assert isinstance(outcome, BccError)  # the BCC is checked first, as in the decoder
    assert s.bcc_memory.suspect is None
    assert isinstance(readout(s, XOR, XOR, XOR), BccError)  # still only the first suspicion
    assert s.bcc_algorithm is BccAlgorithm.SUM7


def test_the_callers_check_counts_for_the_suspicion() -> None:
    def never(reading: Reading) -> None:
        raise ImplausibleError("history says no", rule="customer", register="0.0")

    s = session(bcc_hint="sum7")
    assert isinstance(readout(s, XOR, XOR, XOR, accept=never), ImplausibleError)
    assert s.bcc_memory.suspect is None
    assert isinstance(readout(s, XOR, XOR, XOR), BccError)
    # and in the readout that would switch: learning waits until the caller's check passed
    assert isinstance(readout(s, XOR, XOR, XOR, accept=never), ImplausibleError)
    assert s.bcc_algorithm is BccAlgorithm.SUM7


def test_memory_carries_to_a_fresh_session() -> None:
    first = session(bcc_hint="sum7")
    assert isinstance(readout(first, XOR, XOR, XOR), BccError)
    second = session(bcc_memory=first.bcc_memory)
    assert algorithm(readout(second, XOR)) is BccAlgorithm.XOR
    # a bcc_hint alone would have refused it
    assert isinstance(readout(session(bcc_hint="sum7"), XOR, XOR, XOR), BccError)
    with pytest.raises(UsageError, match="bcc_memory"):
        session(bcc_memory="sum7")
    with pytest.raises(UsageError, match="bcc_hint"):
        session(bcc_hint="crc")


def test_both_matching_teaches_nothing() -> None:
    """A block over which the sum and the XOR agree: the telegram says nothing of the meter."""
    body = SPEC_BODY.replace("1.31(0000482*h)", "1.31(9822997*h)").replace(
        "1.26(0000000)", "1.26(9959984)"
    )
    assert reply(body)[-1] == reply(body, bcc=BccAlgorithm.XOR)[-1]
    both = reply(body)
    s = session()
    outcome = readout(s, both)
    assert isinstance(outcome, Reading) and outcome.bcc_certainty is BccCertainty.UNDECIDED
    assert s.bcc_memory == BccMemory()
    assert outcome.bcc_algorithm is BccAlgorithm.SUM7  # the decoder's first, nothing known
    s = session(bcc_hint="xor")
    outcome = readout(s, both)  # it matches the learned XOR too
    assert isinstance(outcome, Reading) and outcome.bcc_algorithm is BccAlgorithm.XOR
    assert outcome.telegram.bcc_check is not None and outcome.raw == both
    assert s.bcc_memory == BccMemory(BccAlgorithm.XOR, None, confirmed=True)


def test_how_sure_a_new_meters_algorithm_is() -> None:
    s = session()
    first = readout(s, EXAMPLE)
    assert isinstance(first, Reading) and first.bcc_certainty is BccCertainty.OWN
    second = readout(s, EXAMPLE)
    assert isinstance(second, Reading) and second.bcc_certainty is BccCertainty.CONFIRMED
    s = session()
    first = readout(s, XOR)
    assert isinstance(first, Reading) and first.bcc_certainty is BccCertainty.UNCONFIRMED
    second = readout(s, XOR)
    assert isinstance(second, Reading) and second.bcc_certainty is BccCertainty.CONFIRMED
    fixed = readout(session(bcc=BccMode.SUM7), EXAMPLE)
    assert isinstance(fixed, Reading) and fixed.bcc_certainty is BccCertainty.FIXED


@pytest.mark.parametrize(("mode", "data"), [(BccMode.SUM7, XOR), (BccMode.XOR, EXAMPLE)])
def test_a_fixed_mode_never_changes(mode: BccMode, data: bytes) -> None:
    s = session(bcc=mode)
    for _ in range(3):
        outcome = readout(s, data, data, data)
        assert isinstance(outcome, BccError)
        assert s.next_delay(outcome, 1) is None  # not retried: a misconfigured reader
    assert s.bcc_algorithm is BccAlgorithm(mode.value)


def test_a_telegram_built_by_hand_has_no_verdict() -> None:
    good = decode_reply(EXAMPLE)
    by_hand = Telegram(good.identification, good.data_block, BccAlgorithm.SUM7, good.bcc, b"")
    with pytest.raises(UsageError, match="no BCC check"):
        session(bcc_hint="sum7").check_bcc(by_hand)
