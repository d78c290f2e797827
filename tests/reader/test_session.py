"""The sans-IO readout: phases, timeouts, echo, BCC learning, draining; no I/O, no real time."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from kamstrup382.emulator.faults import apply_faults
from kamstrup382.errors import (
    BccError,
    ConnectionLost,
    FramingError,
    ParityError,
    ReadTimeout,
    UsageError,
)
from kamstrup382.protocol import REQUEST, BccAlgorithm, add_parity
from kamstrup382.reader import (
    EXPECTED_REPLY_SIZE,
    PortKind,
    RetryPolicy,
    Session,
    Timing,
    default_line,
    parse_port,
)
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.session import Readout
from tests.reader.peer import EXAMPLE

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMING = Timing(answer_timeout=0.6, answer_margin=0.3)


def with_xor(reply: bytes) -> bytes:
    """``reply`` as an IEC meter sends it: the emulator's ``xor`` fault."""
    return apply_faults(reply, ["xor"], random.Random(0), eight_bit=False).reply


def wall(mono: float) -> datetime:
    return T0 + timedelta(seconds=mono)


def feed(readout: Readout, data: bytes, at: float, *, split: int | None = None) -> bool:
    """Feed ``data`` at time ``at`` (all at once, or in pieces of ``split`` bytes)."""
    size = split or len(data) or 1
    done = False
    for start in range(0, len(data), size):
        done = readout.receive(data[start : start + size], at, wall(at))
    return done


def started(session: Session, at: float = 100.0) -> Readout:
    readout = session.readout()
    readout.sent(at, wall(at))
    return readout


# -- ports and policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "kind", "line"),
    [
        ("/dev/ttyUSB0", PortKind.DEVICE, LineMode.SEVEN_E_ONE),
        ("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1-if00-port0", PortKind.DEVICE, "7E1"),
        ("COM3", PortKind.DEVICE, LineMode.SEVEN_E_ONE),
        ("socket://10.0.0.5:4001", PortKind.SOCKET, LineMode.EIGHT_N_ONE),
        ("rfc2217://gw:2217", PortKind.RFC2217, LineMode.SEVEN_E_ONE),
        ("loop://", PortKind.URL, LineMode.SEVEN_E_ONE),
    ],
)
def test_parse_port(port: str, kind: PortKind, line: str) -> None:
    spec = parse_port(port)
    assert spec.kind is kind
    assert default_line(spec) == line


def test_parse_port_tcp_parts() -> None:
    spec = parse_port("socket://[::1]:4001")
    assert (spec.host, spec.tcp_port) == ("::1", 4001)


@pytest.mark.parametrize("port", ["", "   ", "socket://host", "socket://:12", "rfc2217://h:x"])
def test_bad_port(port: str) -> None:
    with pytest.raises(UsageError, match="port"):
        parse_port(port)


def test_timing_from_the_baud_rate() -> None:
    timing = Timing()
    assert timing.character_time == pytest.approx(1 / 30)
    assert timing.request_time == pytest.approx(5 / 30)
    assert timing.answer_window == pytest.approx(5 / 30 + 0.6 + 0.3)
    assert timing.inter_character_timeout == pytest.approx(6 / 30 + 0.3)
    fast = Timing(baudrate=30000, answer_margin=0)
    assert fast.inter_character_timeout == pytest.approx(0.1)  # the floor
    # the deadline leaves room for the whole reply at the line's speed
    assert timing.deadline_for(EXPECTED_REPLY_SIZE) > (EXPECTED_REPLY_SIZE + 5) / 30 + 0.6
    assert Timing(deadline=12).deadline_for(10_000) == 12


@pytest.mark.parametrize(
    "kwargs",
    [
        {"baudrate": 0},
        {"answer_timeout": 0},
        {"answer_margin": -1},
        {"deadline": -5},
        {"inter_character": 0},
    ],
)
def test_timing_rejects(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        Timing(**kwargs)  # type: ignore[arg-type]


def test_retry_policy() -> None:
    policy = RetryPolicy(retries=3, backoff=0.5, max_backoff=1.5)
    timeout = ReadTimeout("x", phase="answer")
    assert [policy.next_delay(timeout, n, fixed_bcc=False) for n in (1, 2, 3, 4)] == [
        0.5,
        1.0,
        1.5,
        None,
    ]
    assert policy.next_delay(UsageError("x"), 1, fixed_bcc=False) is None
    assert policy.next_delay(ConnectionLost("x"), 1, fixed_bcc=False) == 0.5
    assert policy.next_delay(ParityError("x"), 1, fixed_bcc=False) == 0.5
    # the other algorithm's BCC with a fixed algorithm: misconfigured, not retried
    other = BccError("x", received=0x12, sum7=0x3E, xor=0x12)
    assert policy.next_delay(other, 1, fixed_bcc=True) is None
    assert policy.next_delay(other, 1, fixed_bcc=False) == 0.5
    corrupt = BccError("x", received=0x40, sum7=0x3E, xor=0x12)
    assert policy.next_delay(corrupt, 1, fixed_bcc=True) == 0.5
    with pytest.raises(UsageError):
        RetryPolicy(retries=-1)


# -- one readout -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", [None, 7, 1])
@pytest.mark.parametrize("line", [LineMode.SEVEN_E_ONE, LineMode.EIGHT_N_ONE])
def test_readout_whole_split_and_byte_by_byte(split: int | None, line: LineMode) -> None:
    session = Session(line=line, timing=TIMING)
    readout = started(session)
    wire = add_parity(EXAMPLE) if line is LineMode.EIGHT_N_ONE else EXAMPLE
    assert readout.request == (add_parity(REQUEST) if line is LineMode.EIGHT_N_ONE else REQUEST)
    assert not feed(readout, wire[:-1], 100.2, split=split)
    assert readout.received == len(EXAMPLE) - 1
    assert feed(readout, wire[-1:], 105.9)
    reading = readout.reading("p", 1)
    assert reading.raw == EXAMPLE
    assert reading.line is line
    assert reading.bcc_algorithm is BccAlgorithm.SUM7
    assert reading.answer_delay == pytest.approx(0.2)
    assert reading.duration == pytest.approx(5.9)
    assert reading.requested_at == wall(100.0)
    assert reading.first_byte_at == wall(100.2)
    assert reading.done_at == wall(105.9)
    assert reading.registers["actual_peak"] == reading.meter_values().actual_peak


def test_the_answer_window_then_the_inter_character_timeout() -> None:
    session = Session(line=LineMode.SEVEN_E_ONE, timing=TIMING)
    readout = started(session)
    assert readout.timeout_at == pytest.approx(100.0 + TIMING.answer_window)
    feed(readout, EXAMPLE[:50], 100.3)
    assert readout.timeout_at == pytest.approx(100.3 + TIMING.inter_character_timeout)


def test_echo_keeps_the_answer_window_open() -> None:
    session = Session(line=LineMode.EIGHT_N_ONE, timing=TIMING)
    readout = started(session)
    feed(readout, add_parity(b"/?!"), 100.01)
    feed(readout, add_parity(b"\r\n"), 100.02)
    assert readout.answering
    assert readout.timeout_at == pytest.approx(100.0 + TIMING.answer_window)
    assert feed(readout, add_parity(EXAMPLE), 100.3)
    reading = readout.reading("p", 1)
    assert reading.raw == EXAMPLE
    assert reading.answer_delay == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("data", "phase"),
    [
        (b"", "answer"),
        (b"zz\r\n", "answer"),  # noise is not an answer
        (EXAMPLE[:60], "inter_character"),
    ],
)
def test_timeout_phases(data: bytes, phase: str) -> None:
    session = Session(line=LineMode.SEVEN_E_ONE, timing=TIMING)
    readout = started(session)
    if data:
        feed(readout, data, 100.3)
    error = readout.expired(readout.timeout_at)
    assert isinstance(error, ReadTimeout)
    assert error.phase == phase
    assert error.received == len(data)
    assert f"phase {phase}" in str(error)


def test_deadline_phase() -> None:
    session = Session(line=LineMode.SEVEN_E_ONE, timing=Timing(deadline=2.0))
    readout = started(session)
    at = 100.0
    for _ in range(40):  # bytes keep coming, never a telegram
        at += 0.05
        feed(readout, b"/", at) if readout.answering else feed(readout, b"x", at)
    assert readout.timeout_at == pytest.approx(102.0)
    error = readout.expired(102.0)
    assert error.phase == "deadline"
    assert "identification line not ended" in str(error)


def test_corrupt_bytes_are_typed_errors() -> None:
    session = Session(line=LineMode.EIGHT_N_ONE, timing=TIMING)
    readout = started(session)
    wire = bytearray(add_parity(EXAMPLE))
    wire[40] ^= 0x80
    with pytest.raises(ParityError) as caught:
        feed(readout, bytes(wire), 100.2)
    assert caught.value.offset == 40
    assert readout.needs_drain(caught.value)

    readout = started(session)
    with pytest.raises(FramingError):
        feed(readout, add_parity(EXAMPLE.replace(b"\x02", b"X", 1)), 100.2)


def test_noise_before_the_reply_is_skipped_whatever_its_parity() -> None:
    readout = started(Session(line=LineMode.EIGHT_N_ONE, timing=TIMING))
    noise = bytes([0x01, 0x80, 0xFF, 0x30])  # two of them fail even parity
    assert not feed(readout, noise, 100.1)
    assert readout.answering
    assert feed(readout, noise[:2] + add_parity(EXAMPLE), 100.2)
    assert readout.reading("p", 1).raw == EXAMPLE
    # from the identification's '/' on, parity is checked
    readout = started(Session(line=LineMode.EIGHT_N_ONE, timing=TIMING))
    with pytest.raises(ParityError) as caught:
        wire = b"\x80" + add_parity(b"/KAM")
        feed(readout, wire[:-1] + bytes([wire[-1] ^ 0x80]), 100.2)
    assert caught.value.offset == 4


def test_eight_bit_bytes_on_a_7e1_line_are_refused() -> None:
    readout = started(Session(line=LineMode.SEVEN_E_ONE, timing=TIMING))
    with pytest.raises(FramingError, match="bit 7"):
        feed(readout, add_parity(EXAMPLE), 100.2)


# -- one readout's telegram (the BCC rules across readouts: test_bcc_memory.py) ---------------


def read_one(session: Session, reply: bytes) -> BccAlgorithm:
    """One readout of a single attempt that gets ``reply``."""
    session.begin()
    readout = started(session)
    assert feed(readout, reply, 100.2)
    return session.conclude(readout, "p", 1).bcc_algorithm


def test_learned_size_sets_the_progress_total() -> None:
    session = Session(line=LineMode.SEVEN_E_ONE, timing=TIMING, expected_size=500)
    read_one(session, EXAMPLE)
    assert session.readout().expected == len(EXAMPLE)


def test_drain_decisions() -> None:
    session = Session(line=LineMode.SEVEN_E_ONE, timing=TIMING)
    readout = started(session)
    assert not readout.needs_drain(ReadTimeout("x", phase="answer"))
    assert not readout.needs_drain(BccError("x", received=1, sum7=2, xor=3))
    feed(readout, EXAMPLE[:30], 100.2)
    assert readout.needs_drain(ReadTimeout("x", phase="deadline", received=30))
    assert not readout.needs_drain(ReadTimeout("x", phase="inter_character", received=30))
    assert readout.drain_limit() > readout.quiet_at


def test_incomplete_readout_has_no_reading() -> None:
    readout = started(Session(line=LineMode.SEVEN_E_ONE, timing=TIMING))
    feed(readout, EXAMPLE[:30], 100.2)
    with pytest.raises(UsageError):
        readout.reading("p", 1)


def test_session_rejects_bad_modes() -> None:
    with pytest.raises(UsageError):
        Session(line="9N2")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Session(line=LineMode.SEVEN_E_ONE, bcc="crc")  # type: ignore[arg-type]


def test_wall_times_follow_the_monotonic_clock_by_default() -> None:
    readout = started(Session(line=LineMode.SEVEN_E_ONE, timing=TIMING))
    readout.receive(EXAMPLE[:10], 100.25)
    assert readout.receive(EXAMPLE[10:], 105.5)
    reading = readout.reading("p", 1)
    assert reading.first_byte_at == wall(100.25)
    assert reading.done_at == wall(105.5)


# -- the largest reply accepted --------------------------------------------------------------


def test_the_session_bounds_each_readouts_reply() -> None:
    session = Session(line=LineMode.SEVEN_E_ONE, timing=TIMING, max_reply=len(EXAMPLE))
    assert session.max_reply == len(EXAMPLE)
    assert feed(started(session), EXAMPLE, 100.2)  # exactly at the limit: accepted
    tight = Session(
        line=LineMode.SEVEN_E_ONE, timing=TIMING, expected_size=100, max_reply=len(EXAMPLE) - 1
    )
    readout = started(tight)
    assert readout.decoder.max_reply == len(EXAMPLE) - 1
    with pytest.raises(FramingError, match=f"longer than {len(EXAMPLE) - 1} bytes") as info:
        feed(readout, EXAMPLE, 100.2)
    assert info.value.offset == len(EXAMPLE) - 3
    assert readout.needs_drain(info.value)  # the meter is still sending: let it pass
    assert Session(line=LineMode.SEVEN_E_ONE).max_reply == 2048


@pytest.mark.parametrize("max_reply", [0, 15, EXPECTED_REPLY_SIZE - 1, 300.5])
def test_a_max_reply_below_the_expected_reply_is_a_usage_error(max_reply: object) -> None:
    with pytest.raises(UsageError, match="max_reply"):
        Session(line=LineMode.SEVEN_E_ONE, max_reply=max_reply)  # type: ignore[arg-type]
