"""The emulator's line, read by a raw client (pyserial over the pty, socket:// over TCP).

Every reply is checked byte for byte against the protocol encoder's bytes for the model's
values at that moment (a manual clock keeps them still), with a valid sum BCC.
"""

from __future__ import annotations

import os
import socket
import termios
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import serial

from kamstrup382.clock import ManualClock
from kamstrup382.emulator import ConstantLoad, Emulator, EmulatorThread, MeterModel, MeterSettings
from kamstrup382.emulator.line import CHARACTERS_PER_SECOND
from kamstrup382.emulator.pty import PARK_SPEED
from kamstrup382.errors import BccError, UsageError
from kamstrup382.protocol import (
    ETX,
    REQUEST,
    STX,
    BccAlgorithm,
    BccMode,
    add_parity,
    bcc_sum7,
    decode_reply,
    encode_reply,
    first_parity_error,
    strip_parity,
)
from tests.fixtures.emulator import FAST, START, RawLine, wait_for


def expected_reply(emu: EmulatorThread, meter: int = 0, *, eight_bit: bool) -> bytes:
    model = emu.models[meter]
    return encode_reply(model.identification, model.values(), eight_bit=eight_bit)


def check_sum_bcc(reply7: bytes) -> None:
    stx, etx = reply7.index(bytes((STX,))), reply7.rindex(bytes((ETX,)))
    assert etx == len(reply7) - 2
    assert reply7[-1] == bcc_sum7(reply7[stx + 1 : etx + 1])


def test_tcp_reply_is_the_models_telegram_byte_by_byte(
    emulator_tcp: EmulatorThread, emulator_clock: ManualClock
) -> None:
    with RawLine(emulator_tcp.ports[0]) as line:
        line.send()
        got = line.read_reply()
        want = expected_reply(emulator_tcp, eight_bit=True)
        assert got == want  # 8-bit bytes with the even-parity bit, as a TCP gateway delivers
        assert first_parity_error(got) is None
        assert any(b & 0x80 for b in got)
        check_sum_bcc(strip_parity(got))
        assert strip_parity(got).startswith(b"/KAM 685-382-OK-15\r\n\x020.0(00054042)\r\n")
        assert emulator_tcp.sent(0) == [strip_parity(got)]

        # three hours at 2 kW later: 6 kWh more, in tariff 1; same connection, asked again
        emulator_clock.advance(timedelta(hours=3))
        line.send()
        again = line.read_reply()
    assert again == expected_reply(emulator_tcp, eight_bit=True)
    first, second = emulator_tcp.sent_values(0)
    assert second.energy == first.energy + 6
    assert second.tariff_1 == first.tariff_1 + 6
    assert second.hour_counter == first.hour_counter + 3
    assert decode_reply(strip_parity(again)).meter_values() == second


def test_pty_reply_is_the_models_telegram_in_7_bit(
    emulator_pty: EmulatorThread,
) -> None:
    with RawLine(emulator_pty.ports[0]) as line:
        line.send()
        got = line.read_reply()
    assert got == expected_reply(emulator_pty, eight_bit=False)
    assert all(b < 0x80 for b in got)
    check_sum_bcc(got)
    assert emulator_pty.sent(0) == [got]
    assert emulator_pty.ports[0].startswith("/dev/pts/")


def slave_speed(path: str) -> int:
    """The slave's speed, read through a descriptor of our own (an open without tcsetattr)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        return int(termios.tcgetattr(fd)[4])
    finally:
        os.close(fd)


def test_pty_opens_again_and_again_at_300_baud_7e1(
    emulator_pty: EmulatorThread, emulator_clock: ManualClock
) -> None:
    path = emulator_pty.ports[0]
    for _ in range(6):
        emulator_clock.advance(timedelta(hours=1))
        # a reader that asks: the slave is parked when the request arrives, so the next
        # open, right after this close, finds it at another speed than 300 baud
        with RawLine(path) as line:
            line.send()
            assert line.read_reply() == expected_reply(emulator_pty, eight_bit=False)
        # a reader that opens and closes without a word: parked again after its close
        serial.Serial(path, 300, bytesize=7, parity="E", stopbits=1, timeout=0.1).close()
        wait_for(lambda: slave_speed(path) == PARK_SPEED)
    assert len(emulator_pty.log(0)) == 6


def test_pty_is_parked_between_readers(emulator_pty: EmulatorThread) -> None:
    path = emulator_pty.ports[0]
    with RawLine(path) as line:
        line.send()
        line.read_reply()
        # the reader's 300 baud has been taken back while it is still open ...
        wait_for(lambda: termios.tcgetattr(line.serial.fd)[4] == PARK_SPEED)
        # ... and the reader still works: reconfiguring, reading again
        line.serial.timeout = 4.0
        line.send()
        assert line.read_reply() == expected_reply(emulator_pty, eight_bit=False)


@pytest.mark.parametrize(("transport", "eight_bit"), [("tcp", False), ("pty", True)])
def test_line_form_is_configurable(transport: str, eight_bit: bool) -> None:
    clock = ManualClock(START)
    with (
        EmulatorThread(
            transport=transport,
            speed=FAST,
            delay=0.02,
            eight_bit=eight_bit,
            clock=clock,
            load=ConstantLoad(1),
        ) as emu,
        RawLine(emu.ports[0]) as line,
    ):
        line.send()
        got = line.read_reply()
        assert got == expected_reply(emu, eight_bit=eight_bit)
    assert any(b & 0x80 for b in got) is eight_bit


def test_xor_bcc_meter(emulator_clock: ManualClock) -> None:
    with (
        EmulatorThread(
            speed=FAST, delay=0.02, bcc="xor", clock=emulator_clock, load=ConstantLoad(1)
        ) as emu,
        RawLine(emu.ports[0]) as line,
    ):
        line.send()
        got = strip_parity(line.read_reply())
        model = emu.models[0]
    assert got == encode_reply(model.identification, model.values(), bcc=BccAlgorithm.XOR)
    assert decode_reply(got, bcc=BccMode.AUTO).bcc_algorithm is BccAlgorithm.XOR
    with pytest.raises(BccError):
        decode_reply(got)  # not the Kamstrup sum


def test_only_a_complete_request_is_answered(emulator_tcp: EmulatorThread) -> None:
    with RawLine(emulator_tcp.ports[0]) as line:
        # noise, partial requests, a request with the wrong line end: no answer
        for junk in (b"\x00\xff noise", b"/?!", b"\r", b"x\n", b"/?!\n", b"/?\r\n", b"?!\r\n"):
            line.send(junk)
        assert line.drain(0.1) == b""
        assert emulator_tcp.log(0) == []
        # noise right before a complete request: answered, once
        line.send(b"~~\x7f" + REQUEST)
        assert strip_parity(line.read_reply()) == expected_reply(emulator_tcp, eight_bit=False)
        # a request one character at a time, with the parity bit set as an 8N1 client sends it
        for char in add_parity(REQUEST):
            line.send(bytes((char,)))
        assert strip_parity(line.read_reply()) == expected_reply(emulator_tcp, eight_bit=False)
        assert line.drain(0.05) == b""
    assert len(emulator_tcp.log(0)) == 2


def test_a_request_while_answering_is_ignored_and_later_one_is_answered(
    emulator_clock: ManualClock,
) -> None:
    # slow line (30 characters a second x 20): the second request arrives mid-reply
    with (
        EmulatorThread(speed=20, delay=0.02, clock=emulator_clock, load=ConstantLoad(1)) as emu,
        RawLine(emu.ports[0]) as line,
    ):
        line.send()
        first = line.read_exactly(10)
        line.send()  # mid-reply: the meter is talking, not listening
        rest = line.read_reply()
        assert first + rest == expected_reply(emu, eight_bit=True)
        assert line.drain(0.1) == b""
        line.send()  # the reader asks again
        assert line.read_reply() == expected_reply(emu, eight_bit=True)
    assert len(emu.log(0)) == 2


def test_meters_are_independent_on_consecutive_ports(emulator_clock: ManualClock) -> None:
    with EmulatorThread(
        3, speed=FAST, delay=0.02, clock=emulator_clock, load=ConstantLoad(1)
    ) as emu:
        ports = [int(p.rsplit(":", 1)[1]) for p in emu.ports]
        assert ports == [ports[0], ports[0] + 1, ports[0] + 2]
        customers = [m.settings.customer_number for m in emu.models]
        assert customers == ["00054042", "00054043", "00054044"]
        emu.models[2].tariff_input = True  # meter 3 on tariff 2
        emulator_clock.advance(timedelta(hours=2))
        replies = []
        for index in (2, 0):
            with RawLine(emu.ports[index]) as line:
                line.send()
                replies.append(decode_reply(strip_parity(line.read_reply())).meter_values())
        assert [len(emu.log(i)) for i in range(3)] == [1, 0, 1]
    third, first = replies
    assert third.customer_number == "00054044" and first.customer_number == "00054042"
    assert third.tariff_2 == first.tariff_2 + 2 and third.tariff_1 == first.tariff_1 - 2


def free_port_pair() -> int:
    for base in range(23000, 24000, 2):
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
            return base
    raise AssertionError("no two consecutive free ports")


def test_given_models_and_a_fixed_first_port() -> None:
    clock = ManualClock(START)
    models = [
        MeterModel(
            MeterSettings(customer_number="12345678", energy_kwh=9999999, tariff_1_kwh=9999979),
            None,
            clock,
        ),
        MeterModel(MeterSettings(type_number="685-191-SK-02"), ConstantLoad(0), clock),
    ]
    free = free_port_pair()
    with EmulatorThread(models, port=free, speed=FAST, delay=0.02) as emu:
        assert emu.ports == [f"socket://127.0.0.1:{free}", f"socket://127.0.0.1:{free + 1}"]
        assert emu.models == models
        with pytest.raises(UsageError, match=f"port {free}"):
            EmulatorThread(1, port=free).start()
        with RawLine(emu.ports[1]) as line:
            line.send()
            telegram = decode_reply(strip_parity(line.read_reply()))
    assert str(telegram.identification).endswith("685-191-SK-02")


def test_random_delays_are_inside_the_window_and_seeded() -> None:
    def delays(seed: int) -> list[float]:
        with (
            EmulatorThread(speed=1000, delay=(0.02, 0.2), seed=seed) as emu,
            RawLine(emu.ports[0]) as line,
        ):
            for _ in range(4):
                line.send()
                line.read_reply()
            return [r.delay for r in emu.log(0)]

    first, again, other = delays(7), delays(7), delays(8)
    assert first == again != other
    assert all(0.02 <= d <= 0.2 for d in first + other)
    assert len(set(first)) == 4


def test_a_reply_never_beats_the_wire() -> None:
    """Lower bound only: the request and the reply at 30 x 20 characters a second + delay."""
    speed, delay = 20.0, 0.05
    with (
        EmulatorThread(speed=speed, delay=delay) as emu,
        RawLine(emu.ports[0]) as line,
    ):
        sent_at = time.monotonic()  # before the write: the emulator cannot see it earlier
        line.send()
        reply = line.read_reply()
        done = time.monotonic()
    floor = (len(REQUEST) + len(reply)) / CHARACTERS_PER_SECOND / speed + delay
    assert done - sent_at >= floor * 0.999
    exchange = emu.log(0)[0]
    assert exchange.complete and exchange.written == len(reply) and exchange.delay == delay


async def test_async_emulator_over_pty_and_tcp() -> None:
    clock = ManualClock(START)
    async with Emulator(2, transport="pty", speed=FAST, delay=0.02, clock=clock) as emu:
        assert len(emu.ports) == 2 and emu.ports[0] != emu.ports[1]
        import asyncio

        def read(port: str) -> bytes:
            with RawLine(port) as line:
                line.send()
                return line.read_reply()

        got = await asyncio.to_thread(read, emu.ports[1])
        model = emu.models[1]
        assert got == encode_reply(model.identification, model.values())
        assert emu.sent(1) == [got] and emu.sent(0) == []
        assert emu.sent_values(1)[0].customer_number == "00054043"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": 0.01}, "answer window"),
        ({"delay": (0.3, 0.7)}, "answer window"),
        ({"delay": (0.5, 0.3)}, "answer window"),
        ({"speed": 0}, "speed"),
        ({"transport": "udp"}, "transport"),
        ({"bcc": "crc"}, "bcc"),
        ({"port": 70000}, "port"),
        ({"faults": "flip=2"}, "faults.flip"),
    ],
)
def test_bad_arguments_name_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Emulator(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="meters"):
        Emulator(0)


def test_registers_start_at_the_spec_example() -> None:
    clock = ManualClock(START)
    with (
        EmulatorThread(speed=FAST, delay=0.02, clock=clock, load=ConstantLoad(0)) as emu,
        RawLine(emu.ports[0]) as line,
    ):
        line.send()
        values = decode_reply(strip_parity(line.read_reply())).meter_values()
    assert values.energy == 53 and values.actual_peak == Decimal("18.3")


def connects(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def read_once_free(port: str) -> bytes:
    """Read as soon as the port takes a reader (it may still be listening again)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with RawLine(port) as line:
                line.send()
                return line.read_reply()
        except serial.SerialException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_exclusive_meter_takes_one_reader_at_a_time(emulator_clock: ManualClock) -> None:
    with EmulatorThread(
        2, speed=FAST, delay=0.02, exclusive=True, clock=emulator_clock, load=ConstantLoad(1)
    ) as emu:
        host, port = emu.ports[0].removeprefix("socket://").rsplit(":", 1)
        with RawLine(emu.ports[0]) as line:
            line.send()
            assert line.read_reply() == expected_reply(emu, eight_bit=True)
            # the port is this reader's: another one is refused meanwhile
            assert not connects(host, int(port))
            with RawLine(emu.ports[1]) as other:  # the other meter is free
                other.send()
                assert other.read_reply() == expected_reply(emu, 1, eight_bit=True)
        # the reader left: the port takes the next one
        assert read_once_free(emu.ports[0]) == expected_reply(emu, eight_bit=True)
    assert len(emu.log(0)) == 2


def test_a_reader_hanging_up_mid_reply_cuts_it_short(emulator_clock: ManualClock) -> None:
    with EmulatorThread(speed=20, delay=0.02, clock=emulator_clock, load=ConstantLoad(1)) as emu:
        with RawLine(emu.ports[0]) as line:
            line.send()
            head = line.read_exactly(20)
        wait_for(lambda: emu.log(0)[0].ended)
        (exchange,) = emu.log(0)
        assert not exchange.complete
        assert 20 <= exchange.written < len(exchange.wire)
        assert emu.sent(0) == [strip_parity(exchange.wire[: exchange.written])]
        assert emu.sent(0)[0].startswith(strip_parity(head))
        # the meter answers the next reader in full
        with RawLine(emu.ports[0]) as line:
            line.send()
            assert line.read_reply() == expected_reply(emu, eight_bit=True)
        assert emu.log(0)[1].complete
