"""Reader and AsyncReader against a meter following a script, over loopback TCP and a pty.

A script names what the meter does for each request (the last action repeating). The meter is
the emulator, with its faults, wherever they make every action of the script
(:data:`EMULATED`); the scripted peer (:mod:`tests.reader.peer`) only plays what the emulator
cannot (an echo, a hangup, a late answer abandoned for the next request, ...).

Every test runs with both readers (``api``) and, where the wire allows, both transports.
Timeouts are short (``FAST``) so that failing phases are quick; nothing asserts on time.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

from kamstrup382.emulator import EmulatorThread
from kamstrup382.errors import (
    BccError,
    ConnectionLost,
    FramingError,
    Kamstrup382Error,
    ParityError,
    ReadTimeout,
    UsageError,
)
from kamstrup382.protocol import BccAlgorithm
from kamstrup382.reader import AsyncReader, Reader, Timing
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.reading import Reading
from tests.fixtures.emulator import ExampleMeter
from tests.reader.peer import EXAMPLE, Gate, Rfc2217Bridge, ScriptedPeer

FAST = Timing(answer_timeout=0.1, answer_margin=0.05)
Outcome = Reading | Kamstrup382Error

#: The script's actions the emulator's faults play: the faults of that request.
EMULATED: dict[str, tuple[str, ...]] = {
    "answer": (),
    "silent": ("silent",),
    "truncate": ("truncate",),
    "bad_bcc": ("bcc",),
    "xor": ("xor",),
    "parity": ("parity",),
}


class Meter(Protocol):
    """Where a scripted meter is, and how many requests it has heard."""

    @property
    def port(self) -> str: ...

    @property
    def requests(self) -> int: ...


def read_many(api: str, port: str, count: int = 1, **options: Any) -> list[Outcome]:
    """``count`` readouts with one reader (sync or async); each a Reading or the error raised."""
    options.setdefault("timing", FAST)
    options.setdefault("backoff", 0.01)
    outcomes: list[Outcome] = []
    if api == "sync":
        with Reader(port, **options) as reader:
            for _ in range(count):
                try:
                    outcomes.append(reader.read())
                except Kamstrup382Error as exc:
                    outcomes.append(exc)
        return outcomes

    async def run() -> None:
        async with AsyncReader(port, **options) as reader:
            for _ in range(count):
                try:
                    outcomes.append(await reader.read())
                except Kamstrup382Error as exc:
                    outcomes.append(exc)

    asyncio.run(run())
    return outcomes


def read_one(api: str, port: str, **options: Any) -> Reading:
    (outcome,) = read_many(api, port, **options)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["tcp", "pty"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def meter_factory() -> Iterator[Callable[..., Meter]]:
    """``make(*script, **options)``: the emulator where it plays the whole script, else the
    scripted peer (always with a ``gate``)."""
    meters: list[ExampleMeter | ScriptedPeer] = []

    def make(*script: str, **options: Any) -> Meter:
        meter: ExampleMeter | ScriptedPeer
        if "gate" not in options and all(action in EMULATED for action in script):
            meter = ExampleMeter(*(EMULATED[action] for action in script), **options)
        else:
            meter = ScriptedPeer(*script, **options)
        meter.__enter__()
        meters.append(meter)
        return meter

    yield make
    for meter in meters:
        meter.__exit__(None, None, None)


def test_reads_the_example(api: str, transport: str, meter_factory: Callable[..., Meter]) -> None:
    meter = meter_factory("answer", transport=transport)
    reading = read_one(api, meter.port)
    assert reading.raw == EXAMPLE
    assert reading.port == meter.port
    assert reading.line is (LineMode.EIGHT_N_ONE if transport == "tcp" else LineMode.SEVEN_E_ONE)
    assert reading.attempts == 1
    assert reading.registers["energy"] == 53
    assert 0 < reading.answer_delay <= reading.duration
    assert reading.requested_at <= reading.first_byte_at <= reading.done_at


@pytest.mark.parametrize("line", ["7E1", "8N1"])
def test_line_mode_over_either_transport(
    api: str, transport: str, line: str, meter_factory: Callable[..., Meter]
) -> None:
    meter = meter_factory("answer", transport=transport, eight_bit=line == "8N1")
    reading = read_one(api, meter.port, line=line)
    assert reading.raw == EXAMPLE
    assert reading.line == line


def test_wrong_line_mode_is_a_typed_error(api: str, meter_factory: Callable[..., Meter]) -> None:
    meter = meter_factory("answer", transport="tcp", eight_bit=True)
    (outcome,) = read_many(api, meter.port, line="7E1", retries=0)
    assert isinstance(outcome, FramingError)
    assert "8-bit mode" in str(outcome)


def test_several_readouts_on_one_connection(
    api: str, transport: str, meter_factory: Callable[..., Meter]
) -> None:
    meter = meter_factory("answer", "echo", "noise", "answer", transport=transport)
    outcomes = read_many(api, meter.port, count=4)
    assert [o.raw for o in outcomes if isinstance(o, Reading)] == [EXAMPLE] * 4
    assert meter.requests == 4


@pytest.mark.parametrize(
    ("action", "error", "phase"),
    [
        ("silent", ReadTimeout, "answer"),
        ("late", ReadTimeout, "answer"),
        ("truncate", ReadTimeout, "inter_character"),
        ("stall", ReadTimeout, "inter_character"),
        ("bad_bcc", BccError, None),
        ("framing", FramingError, None),
        ("parity", ParityError, None),
    ],
)
def test_every_failure_is_typed(
    api: str,
    action: str,
    error: type[Kamstrup382Error],
    phase: str | None,
    meter_factory: Callable[..., Meter],
) -> None:
    meter = meter_factory(action, transport="tcp")
    (outcome,) = read_many(api, meter.port, retries=1)
    assert isinstance(outcome, error), outcome
    assert getattr(outcome, "attempts", None) == 2
    assert meter.requests == 2
    if phase is not None:
        assert isinstance(outcome, ReadTimeout)
        assert outcome.phase == phase


def test_deadline_cuts_off_an_endless_line(api: str, meter_factory: Callable[..., Meter]) -> None:
    meter = meter_factory("endless", transport="tcp")
    (outcome,) = read_many(api, meter.port, retries=0, timing=Timing(deadline=0.4))
    # (the rest of the reply is let pass before the next request, not when giving up)
    assert isinstance(outcome, ReadTimeout)
    assert outcome.phase == "deadline"
    assert outcome.received > 0


@pytest.mark.parametrize(
    "action", ["silent", "late", "truncate", "stall", "bad_bcc", "framing", "parity", "hangup"]
)
def test_retries_recover_a_transient_fault(
    api: str, action: str, meter_factory: Callable[..., Meter]
) -> None:
    meter = meter_factory(action, action, "answer", transport="tcp")
    reading = read_one(api, meter.port, retries=2)
    assert reading.raw == EXAMPLE
    assert reading.attempts == 3


def test_the_last_error_is_raised(api: str, meter_factory: Callable[..., Meter]) -> None:
    meter = meter_factory("silent", "bad_bcc", transport="tcp")
    (outcome,) = read_many(api, meter.port, retries=1)
    assert isinstance(outcome, BccError)


def test_stale_input_is_flushed_before_the_request(
    api: str, transport: str, meter_factory: Callable[..., Meter]
) -> None:
    # the first reply comes twice; the second copy must not pass for the answer to the
    # next request, which the meter leaves unanswered
    meter = meter_factory("double", "silent", transport=transport)
    outcomes = read_many(api, meter.port, count=2, retries=0)
    assert isinstance(outcomes[0], Reading)
    assert isinstance(outcomes[1], ReadTimeout)
    assert outcomes[1].phase == "answer"


def test_broken_reply_is_drained_before_the_retry(
    api: str, meter_factory: Callable[..., Meter]
) -> None:
    # the parity error comes in the data block: the rest of the meter's reply is let pass,
    # and the retry gets the complete second reply
    meter = meter_factory("parity", "answer", transport="tcp", delay=0.02)
    reading = read_one(api, meter.port, retries=1)
    assert reading.raw == EXAMPLE
    assert reading.attempts == 2


def test_xor_meter_auto_and_fixed(api: str, meter_factory: Callable[..., Meter]) -> None:
    meter = meter_factory("xor", transport="tcp")
    assert read_one(api, meter.port).bcc_algorithm is BccAlgorithm.XOR
    assert read_one(api, meter.port, bcc="xor").bcc_algorithm is BccAlgorithm.XOR
    requests = meter.requests
    (outcome,) = read_many(api, meter.port, bcc="sum7", retries=3)
    assert isinstance(outcome, BccError)
    assert "sum7" in str(outcome)
    assert meter.requests == requests + 1  # refused at once: no retry can help


def test_progress_counts_up_to_the_reply(api: str, meter_factory: Callable[..., Meter]) -> None:
    meter = meter_factory("echo", transport="tcp")
    seen: list[tuple[int, int]] = []
    reading = read_one(api, meter.port, progress=lambda got, total: seen.append((got, total)))
    assert seen
    assert seen[-1][0] == len(EXAMPLE) + 5  # the echo counts as received
    assert all(got <= total for got, total in seen)
    assert reading.raw == EXAMPLE


def test_connection_refused_is_connection_lost(api: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = f"socket://127.0.0.1:{sock.getsockname()[1]}"
    (outcome,) = read_many(api, port, retries=1)
    assert isinstance(outcome, ConnectionLost)
    assert "cannot connect" in str(outcome)


def test_missing_device_is_connection_lost(api: str, tmp_path: Any) -> None:
    (outcome,) = read_many(api, str(tmp_path / "ttyUSB9"), retries=0)
    assert isinstance(outcome, ConnectionLost)
    assert "ttyUSB9" in str(outcome)


@pytest.mark.parametrize(
    "options",
    [{"line": "9N1"}, {"bcc": "crc"}, {"retries": -1}, {"answer_timeout": 0}, {"baudrate": 0}],
)
def test_usage_errors(api: str, options: dict[str, Any]) -> None:
    cls = Reader if api == "sync" else AsyncReader
    with pytest.raises(UsageError):
        cls("socket://127.0.0.1:1", **options)


def test_pty_reopened_at_300_baud(api: str, meter_factory: Callable[..., Meter]) -> None:
    # a pty refuses a second 7E1 setup at an unchanged speed (spec notes): every new reader
    # on the same pty must still open it
    meter = meter_factory("answer", transport="pty")
    for _ in range(3):
        assert read_one(api, meter.port).raw == EXAMPLE


async def test_many_async_readers_share_one_loop(
    meter_factory: Callable[..., Meter],
) -> None:
    # no meter answers before every reader has sent its request: readers that blocked one
    # another (a blocking wait, one at a time) would all time out
    gate = Gate(14)
    meters = [meter_factory("answer", transport="tcp", gate=gate) for _ in range(8)]
    meters += [meter_factory("silent", transport="tcp", gate=gate) for _ in range(2)]
    meters += [meter_factory("answer", transport="pty", gate=gate) for _ in range(4)]

    async def one(port: str) -> Outcome:
        async with AsyncReader(port, retries=0, answer_margin=0.05) as reader:
            try:
                return await reader.read()
            except Kamstrup382Error as exc:
                return exc

    outcomes = await asyncio.gather(*(one(p.port) for p in meters))
    assert gate.opened.is_set()
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Reading"] * 8 + ["ReadTimeout"] * 2 + ["Reading"] * 4


@pytest.mark.filterwarnings(
    "ignore:set(Daemon|Name).. is deprecated:DeprecationWarning"
)  # pyserial
@pytest.mark.parametrize("line", ["7E1", "8N1"])
def test_rfc2217_gateway(api: str, line: str) -> None:
    # the gateway sets the line as asked (RFC 2217), the reader goes through pyserial
    eight_bit = line == "8N1"
    with (
        EmulatorThread(transport="tcp", speed=50.0, eight_bit=eight_bit) as emu,
        Rfc2217Bridge(emu.ports[0]) as bridge,
    ):
        outcomes = read_many(api, bridge.port, count=2, line=line, timing=Timing(baudrate=15000))
        assert [o.raw for o in outcomes if isinstance(o, Reading)] == emu.sent(0)
        assert [o.meter_values() for o in outcomes if isinstance(o, Reading)] == emu.sent_values(0)
    asked = bridge.settings[0]
    assert asked["baudrate"] == 300
    assert asked["bytesize"] == (8 if eight_bit else 7)
    assert asked["parity"] == ("N" if eight_bit else "E")


def test_other_pyserial_urls(api: str) -> None:
    # loop:// returns what is written: the request comes back as an echo and nothing else
    (outcome,) = read_many(api, "loop://", retries=0)
    assert isinstance(outcome, ReadTimeout)
    assert outcome.phase == "answer"
    assert outcome.received == 5


def test_unknown_url_scheme_is_a_usage_error(api: str) -> None:
    (outcome,) = read_many(api, "foo://bar", retries=3)
    assert isinstance(outcome, UsageError)


def test_bcc_hint(api: str, meter_factory: Callable[..., Meter]) -> None:
    meter = meter_factory("xor", "xor", transport="tcp")
    first, second = read_many(api, meter.port, 2, bcc_hint="sum7", retries=1)
    # a readout's every telegram matching only the other algorithm: refused, all attempts
    assert isinstance(first, BccError) and first.attempts == 2
    # the next readout agrees: the meter changed, followed
    assert isinstance(second, Reading) and second.bcc_algorithm is BccAlgorithm.XOR
    assert second.attempts == 1
    with pytest.raises(UsageError):
        Reader(meter.port, bcc_hint="crc")
