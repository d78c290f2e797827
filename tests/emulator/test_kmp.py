"""The emulated KMP meter over loopback TCP: its values from the meter model, the true baud
rate, KMP's own faults, and what it ignores."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.errors import ConfigError, CrcError, Kamstrup382Error, StuffingError
from kamstrup382.protocol.kmp import (
    KMP_382_REGISTERS,
    Direction,
    Frame,
    FrameDecoder,
    GetRegisterRequest,
    GetSerialNoRequest,
    GetTypeRequest,
    RegisterReply,
    SerialNoReply,
    TypeReply,
    decode_message,
    encode_frame,
    encode_message,
)
from kamstrup382.reader.detect import detect
from kamstrup382.reader.kmp_sync import KmpReader

IDS = tuple(r.id for r in KMP_382_REGISTERS)


def connect(port: str) -> socket.socket:
    host, number = port.removeprefix("socket://").rsplit(":", 1)
    return socket.create_connection((host, int(number)), timeout=5)


def exchange(
    sock: socket.socket, request: bytes, timeout: float = 2.0
) -> tuple[Frame, FrameDecoder, float]:
    """Send, read until the reply's stop byte; the frame, the decoder and the seconds taken."""
    decoder = FrameDecoder(Direction.REPLY)
    started = time.monotonic()
    sock.sendall(request)
    deadline = started + timeout
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        data = sock.recv(4096)
        assert data, "connection closed"
        event = decoder.feed(data)
        if event is not None:
            assert isinstance(event, Frame)
            return event, decoder, time.monotonic() - started


def silent_for(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return True


@pytest.fixture
def kmp_meter() -> Iterator[KmpEmulatorThread]:
    with KmpEmulatorThread(1, seed=3) as emulator:
        yield emulator


def test_registers_come_from_the_meter_model(kmp_meter: KmpEmulatorThread) -> None:
    with connect(kmp_meter.ports[0]) as sock:
        values: dict[str, Decimal] = {}
        for first in range(0, len(IDS), 8):
            frame, _, _ = exchange(sock, encode_message(GetRegisterRequest(IDS[first : first + 8])))
            reply = decode_message(frame)
            assert isinstance(reply, RegisterReply)
            values.update({r.name or "": r.value for r in reply.registers})
            truth = kmp_meter.log(0)[-1].values
            assert truth is not None
            assert all(truth[r.name or ""] == r.value for r in reply.registers)
    model = kmp_meter.emulator.models[0]
    assert set(values) == {r.name for r in KMP_382_REGISTERS}
    assert values["energy"] == int(values["energy_hires"])
    assert int(model.energy_kwh) == values["energy"]
    assert values["power_l1"] + values["power_l2"] + values["power_l3"] == values["power"]
    assert values["power"] > 0
    for n in (1, 2, 3):
        assert 220 <= values[f"voltage_l{n}"] <= 230
        assert (
            values[f"current_l{n}"]
            == Decimal(int(values[f"power_l{n}"] / values[f"voltage_l{n}"] * 100)) / 100
        )
    assert values["max_power"] == model.values().actual_peak * 1000


def test_type_and_serial(kmp_meter: KmpEmulatorThread) -> None:
    with connect(kmp_meter.ports[0]) as sock:
        frame, _, _ = exchange(sock, encode_message(GetTypeRequest()))
        assert isinstance(decode_message(frame), TypeReply)
        frame, _, _ = exchange(sock, encode_message(GetSerialNoRequest()))
        assert decode_message(frame) == SerialNoReply(54042)


@pytest.mark.parametrize("baud", [9600, 1200])
def test_the_reply_takes_the_true_baud_rate(baud: int) -> None:
    with (
        KmpEmulatorThread(1, baud=baud, delay=0.05) as emulator,
        connect(emulator.ports[0]) as sock,
    ):
        request = encode_message(GetRegisterRequest(IDS[:8]))
        _, decoder, took = exchange(sock, request)
        reply_bytes = decoder.received - len(decoder.rest)
        floor = (len(request) + reply_bytes) * 10 / baud + 0.05
        assert floor <= took < floor * 1.05 + 0.01, (took, floor)


def test_faults_echo_crc_stuffing_silent_late() -> None:
    faults = KmpFaults.parse("script=echo/crc/stuffing/silent/late/none")
    with KmpEmulatorThread(1, faults=faults) as emulator, connect(emulator.ports[0]) as sock:
        request = encode_message(GetRegisterRequest(IDS[:8]))
        _, decoder, _ = exchange(sock, request)
        assert decoder.skipped == len(request)  # the echo, skipped to the reply's 0x40
        with pytest.raises(CrcError):
            exchange(sock, request)
        time.sleep(0.3)
        with pytest.raises(StuffingError):
            exchange(sock, request)
        time.sleep(0.3)
        sock.sendall(request)
        assert silent_for(sock, 0.5)
        _, _, took = exchange(sock, request)
        assert took >= 0.7
        exchange(sock, request)
        assert [e.faults for e in emulator.log(0)] == [
            ("echo",),
            ("crc",),
            ("stuffing",),
            ("silent",),
            ("late",),
            (),
        ]


def test_damaged_and_unknown_requests_are_not_answered(kmp_meter: KmpEmulatorThread) -> None:
    with connect(kmp_meter.ports[0]) as sock:
        damaged = bytearray(encode_message(GetTypeRequest()))
        damaged[2] ^= 0x02  # the command id: the CRC no longer matches
        sock.sendall(bytes(damaged))
        assert silent_for(sock, 0.3)
        sock.sendall(encode_frame(Frame(Direction.REQUEST, 0x3F, 0x99, b"")))
        assert silent_for(sock, 0.3)
        frame, _, _ = exchange(sock, encode_message(GetTypeRequest()))  # still listening
        assert frame.cid == 0x01


def test_unknown_registers_are_left_out(kmp_meter: KmpEmulatorThread) -> None:
    with connect(kmp_meter.ports[0]) as sock:
        frame, _, _ = exchange(sock, encode_message(GetRegisterRequest((0x0001, 0x7777))))
        reply = decode_message(frame)
        assert isinstance(reply, RegisterReply)
        assert [r.id for r in reply.registers] == [0x0001]


def test_fault_parsing() -> None:
    assert str(KmpFaults.parse("crc=0.5,script=echo+late/none")) == "crc=0.5,script=echo+late/none"
    for bad in ("flip=0.1", "crc=2", "crc", "script=flip"):
        with pytest.raises(ConfigError):
            KmpFaults.parse(bad)
    assert issubclass(ConfigError, Kamstrup382Error)


def test_emulate_command_serves_kmp(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    args = ["--model", "382jx3", "--baud", "9600", "--faults", "script=echo", "--log", str(log)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kamstrup382", "emulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(3)]
        assert lines[0].startswith("k382 emulate: 1 Kamstrup 382Jx3 (KMP) meter, 9600 baud 8N1")
        port = lines[1].rsplit(" ", 1)[1]
        assert lines[2] == "Ctrl-C stops."
        with connect(port) as sock:
            request = encode_message(GetRegisterRequest(IDS[:3]))
            _, decoder, _ = exchange(sock, request)
            assert decoder.skipped == len(request)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped after 1 requests" in out
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["faults"] == ["echo"]
    assert record["complete"] is True
    assert record["values"]["energy"] == "53"


def test_kmp_meter_on_a_pty_read_through_the_serial_path() -> None:
    with KmpEmulatorThread(1, transport="pty") as emulator:
        port = emulator.ports[0]
        assert port.startswith("/dev/")
        with KmpReader(port) as reader:  # a device path: pyserial at 9600 8N1, select()
            reading = reader.read()
        detection = detect(port, answer_margin=0.0)
    assert reading.values()["energy"] == 53
    assert (detection.protocol, detection.baud) == ("kmp", 9600)


def test_meters_get_their_own_household_or_the_given_load() -> None:
    from kamstrup382.emulator import ConstantLoad

    with KmpEmulatorThread(2) as emulator:
        powers = [m.register_values()["power"] for m in emulator.emulator.meters]
    assert powers[0] != powers[1]  # a household profile each (seeds 0 and 1)
    with KmpEmulatorThread(2, load=ConstantLoad(2.5)) as emulator:
        values = [m.register_values() for m in emulator.emulator.meters]
    assert [v["power"] for v in values] == [2500, 2500]
    assert values[0]["power_l1"] + values[0]["power_l2"] + values[0]["power_l3"] == 2500
