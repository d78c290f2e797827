"""The KMP reader: sans-IO exchanges with the times passed in, the blocking reader against the
emulated KMP meter over loopback TCP (values, requests of at most 8, retries on KMP's faults),
and auto-detection."""

from __future__ import annotations

import asyncio
import os
import termios
import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kamstrup382.emulator import EmulatorThread
from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.errors import (
    CrcError,
    FramingError,
    ImplausibleError,
    Kamstrup382Error,
    ReadTimeout,
    StuffingError,
    UsageError,
)
from kamstrup382.protocol.kmp import (
    KMP_382_REGISTERS,
    GetRegisterRequest,
    GetTypeRequest,
    RegisterReply,
    RegisterValue,
    SerialNoReply,
    decode_message,
    encode_message,
    parse_frame,
)
from kamstrup382.reader.detect import detect
from kamstrup382.reader.kmp_aio import AsyncKmpReader
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.reader.kmp_session import KmpExchange, KmpTiming, plan_requests
from kamstrup382.reader.kmp_sync import DEFAULT_REGISTERS, KmpReader

IDS = tuple(r.id for r in KMP_382_REGISTERS)


def test_plan_asks_at_most_8_registers_a_request() -> None:
    plan = plan_requests(tuple(range(1, 20)))
    assert [len(r.ids) for r in plan] == [8, 8, 3]
    assert sum((r.ids for r in plan), ()) == tuple(range(1, 20))
    with pytest.raises(UsageError):
        plan_requests(())
    with pytest.raises(UsageError):
        plan_requests((1, 1))


def test_exchange_timing_and_checks_without_io() -> None:
    timing = KmpTiming(baud=9600)
    exchange = KmpExchange(GetRegisterRequest((1, 2)), timing)
    exchange.sent(100.0)
    assert exchange.timeout_at == pytest.approx(100.0 + len(exchange.wire) / 960 + 0.5)
    assert exchange.expired(101.0).phase == "answer"
    reply = encode_message(RegisterReply((RegisterValue.of(1, 2, Decimal(5)),)))
    assert exchange.receive(exchange.wire + reply[:5], 100.06) is None  # echo, then a start
    assert exchange.timeout_at == pytest.approx(100.06 + timing.inter_character)
    assert exchange.expired(100.2).phase == "inter_character"
    got = exchange.receive(reply[5:], 100.07)
    assert got == decode_message(parse_frame(reply))
    assert exchange.done_at == 100.07


@pytest.mark.parametrize(
    "reply",
    [
        encode_message(SerialNoReply(7)),  # another command's reply
        encode_message(RegisterReply((RegisterValue.of(3, 2, Decimal(5)),))),  # not asked
        b"\x06",  # an acknowledgement
    ],
)
def test_exchange_refuses_a_reply_to_something_else(reply: bytes) -> None:
    exchange = KmpExchange(GetRegisterRequest((1, 2)), KmpTiming())
    exchange.sent(0.0)
    with pytest.raises(FramingError):
        exchange.receive(reply, 0.1)


def test_reader_reads_the_382_set_from_the_emulated_meter() -> None:
    with KmpEmulatorThread(1) as emulator, KmpReader(emulator.ports[0]) as reader:
        reading = reader.read()
        log = emulator.log(0)
        assert reading.values() == emulator.readout_values(0)
    assert [r.id for r in reading.registers] == list(DEFAULT_REGISTERS)
    assert reading.missing == ()
    assert reading.exchanges == 2 and reading.attempts == 2
    requests = [decode_message(parse_frame(e.request)) for e in log]
    assert all(isinstance(r, GetRegisterRequest) and len(r.ids) <= 8 for r in requests)
    assert reading.values()["energy_hires"] == Decimal("53.00")


def test_reader_retries_through_kmp_faults() -> None:
    faults = KmpFaults.parse("script=crc/echo/stuffing/none")
    with KmpEmulatorThread(1, faults=faults) as emulator, KmpReader(emulator.ports[0]) as reader:
        reading = reader.read()
        kinds = [e.faults for e in emulator.log(0)]
    assert kinds == [("crc",), ("echo",), ("stuffing",), ()]
    assert reading.attempts == 4  # 2 for the first request (crc, echo), 2 for the second
    assert len(reading.registers) == len(DEFAULT_REGISTERS)


@pytest.mark.parametrize(
    ("script", "error", "phase"),
    [
        ("crc/crc", CrcError, None),
        ("stuffing/stuffing", StuffingError, None),
        ("silent/silent", ReadTimeout, "answer"),
    ],
)
def test_reader_raises_the_last_typed_error(
    script: str, error: type[Exception], phase: str | None
) -> None:
    faults = KmpFaults.parse(f"script={script}")
    with KmpEmulatorThread(1, faults=faults) as emulator:
        reader = KmpReader(emulator.ports[0], retries=1)
        with reader, pytest.raises(error) as caught:
            reader.read()
    assert caught.value.attempts == 2  # type: ignore[attr-defined]
    if phase is not None:
        assert caught.value.phase == phase  # type: ignore[attr-defined]


def test_reader_leaves_out_what_the_meter_does_not_have() -> None:
    with (
        KmpEmulatorThread(1) as emulator,
        KmpReader(emulator.ports[0], registers=(0x0001, 0x7777)) as reader,
    ):
        reading = reader.read()
    assert [r.name for r in reading.registers] == ["energy"]
    assert reading.missing == (0x7777,)


def test_reader_at_1200_baud() -> None:
    with (
        KmpEmulatorThread(1, baud=1200) as emulator,
        KmpReader(emulator.ports[0], baud=1200, registers=IDS[:8]) as reader,
    ):
        reading = reader.read()
    assert len(reading.registers) == 8
    assert reading.duration > 0.5  # ~80 bytes at 120 characters a second


def test_identify() -> None:
    with KmpEmulatorThread(1) as emulator, KmpReader(emulator.ports[0]) as reader:
        kind = reader.identify()
    assert kind.meter_type == 0x0382
    assert encode_message(GetTypeRequest()) == emulator.log(0)[0].request


def test_auto_detection_finds_kmp() -> None:
    with KmpEmulatorThread(1) as emulator:
        detection = detect(emulator.ports[0], answer_margin=0.1)
    assert (detection.protocol, detection.baud) == ("kmp", 9600)
    assert [(p.protocol, p.answered) for p in detection.probes] == [
        ("iec", False),
        ("kmp", True),
    ]
    assert detection.probes[0].outcome.startswith("timeout:")
    assert "found KMP at 9600 baud 8N1" in detection.summary


def test_auto_detection_finds_mode_a() -> None:
    with EmulatorThread(1, speed=10) as emulator:
        detection = detect(emulator.ports[0], answer_margin=0.1)
    assert (detection.protocol, detection.baud) == ("iec", 300)
    assert detection.reading is not None
    assert detection.reading.telegram.registers["energy"] == 53


def test_auto_detection_says_when_nothing_answers() -> None:
    with KmpEmulatorThread(1, faults=KmpFaults.parse("silent=1")) as emulator:
        detection = detect(emulator.ports[0], answer_margin=0.0)
    assert detection.protocol is None
    assert detection.summary.startswith("no meter answered")
    assert len(detection.probes) == 2  # socket://: KMP tried at the gateway's one rate


def test_async_reader_reads_many_meters_at_once() -> None:
    async def read_all(ports: list[str]) -> list[KmpReading]:
        async def one(port: str) -> KmpReading:
            async with AsyncKmpReader(port) as reader:
                return await reader.read()

        return await asyncio.gather(*(one(p) for p in ports))

    with KmpEmulatorThread(10) as emulator:
        started = time.monotonic()
        readings = asyncio.run(read_all(emulator.ports))
        took = time.monotonic() - started
        serials = [m.serial for m in emulator.emulator.meters]
    assert serials == list(range(54042, 54052))
    assert all(len(r.registers) == len(DEFAULT_REGISTERS) for r in readings)
    assert took < 3 * max(r.duration for r in readings)  # together, not one after another


def test_async_reader_retries_and_raises_like_the_sync_one() -> None:
    async def read(port: str, retries: int) -> KmpReading:
        async with AsyncKmpReader(port, retries=retries) as reader:
            await reader.identify()
            return await reader.read()

    faults = KmpFaults.parse("script=none/crc/echo/stuffing")
    with KmpEmulatorThread(1, faults=faults) as emulator:
        reading = asyncio.run(read(emulator.ports[0], 2))
    assert reading.attempts == 4
    with (
        KmpEmulatorThread(1, faults=KmpFaults.parse("script=none/silent/silent")) as emulator,
        pytest.raises(ReadTimeout) as caught,
    ):
        asyncio.run(read(emulator.ports[0], 1))
    assert caught.value.attempts == 2


def test_async_reader_waits_for_the_gate_and_asks_accept() -> None:
    class Gate:
        def __init__(self) -> None:
            self.open = asyncio.Event()

        async def wait(self) -> None:
            await self.open.wait()

    judged: list[KmpReading] = []

    def accept(reading: KmpReading) -> None:
        judged.append(reading)
        if len(judged) == 1:
            raise ImplausibleError("energy went down", rule="counter_down", register="energy")

    async def run(emulator: KmpEmulatorThread) -> tuple[KmpReading, int]:
        gate = Gate()
        async with AsyncKmpReader(emulator.ports[0], registers=(1,)) as reader:
            task = asyncio.create_task(reader.read(gate=gate, accept=accept))
            await asyncio.sleep(0.2)
            before = len(emulator.log(0))  # connected, nothing sent while the gate is shut
            gate.open.set()
            return await task, before

    with KmpEmulatorThread(1) as emulator:
        reading, before = asyncio.run(run(emulator))
        requests = len(emulator.log(0))
    assert before == 0
    assert len(judged) == 2 and judged[1] is reading
    assert requests == 2  # the refused reading was read again


def test_eight_n_two_on_a_serial_device() -> None:
    # a MULTICAL line: 1200 baud, 11 bits a character; the pty takes the settings (CSTOPB)
    with KmpEmulatorThread(1, transport="pty", baud=1200, bits_per_character=11) as emulator:
        port = emulator.ports[0]
        with KmpReader(port, baud=1200, stop_bits=2, registers=(1,)) as reader:
            reading = reader.read()
            fd = os.open(port, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            try:  # a tty's settings are the device's, whoever opened it
                cflag, speed = termios.tcgetattr(fd)[2], termios.tcgetattr(fd)[4]
            finally:
                os.close(fd)
        assert cflag & termios.CSTOPB and cflag & termios.CSIZE == termios.CS8
        assert speed == termios.B1200
        assert reading.stop_bits == 2
        assert reading.values() == {"energy": Decimal(53)}
    with pytest.raises(UsageError, match="stop bits"):
        KmpReader("/dev/null", stop_bits=3)


def test_stop_bits_reach_the_serial_port() -> None:
    from kamstrup382.reader.link import serial_settings
    from kamstrup382.reader.port import LineMode

    assert serial_settings(LineMode.EIGHT_N_ONE, 1200, 2)["stopbits"] == 2
    assert serial_settings(LineMode.EIGHT_N_ONE, 9600)["stopbits"] == 1


@given(st.binary(max_size=300), st.integers(1, 50))
def test_exchange_fed_arbitrary_bytes_raises_only_our_errors(data: bytes, step: int) -> None:
    exchange = KmpExchange(GetRegisterRequest((1, 2)), KmpTiming())
    exchange.sent(0.0)
    try:
        for at in range(0, len(data), step):
            if exchange.receive(data[at : at + step], 0.01) is not None:
                break
    except Kamstrup382Error:
        pass
