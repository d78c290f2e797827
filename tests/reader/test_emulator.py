"""Both readers against the emulator over a pty and loopback TCP, at a high line speed.

The emulator logs every exchange (values, clean reply, faults): a reading is correct when it
is exactly what the model sent.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.emulator import Emulator, EmulatorThread
from kamstrup382.emulator.faults import BLIND_KINDS, FAULT_KINDS
from kamstrup382.emulator.server import Transport
from kamstrup382.errors import (
    BccError,
    ConnectionLost,
    FramingError,
    Kamstrup382Error,
    ParityError,
    ReadTimeout,
)
from kamstrup382.protocol import BccAlgorithm
from kamstrup382.reader import AsyncReader, Reader, Timing
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.reading import Reading
from tests.reader.peer import EchoingHead

SPEED = 50.0


def timing(speed: float = SPEED, **kwargs: Any) -> Timing:
    """The spec's answer window, with the character times of a line ``speed`` times faster."""
    return Timing(baudrate=int(300 * speed), **kwargs)


def read_sync(port: str, count: int, **options: Any) -> list[Reading]:
    with Reader(port, **options) as reader:
        return [reader.read() for _ in range(count)]


async def read_async(port: str, count: int, **options: Any) -> list[Reading]:
    async with AsyncReader(port, **options) as reader:
        return [await reader.read() for _ in range(count)]


def assert_model_values(readings: list[Reading], emu: Emulator | EmulatorThread) -> None:
    log = emu.log(0)
    assert len(log) == len(readings)
    assert [r.meter_values() for r in readings] == emu.sent_values(0)
    assert [r.raw for r in readings] == [entry.clean for entry in log]
    assert all(r.attempts == 1 for r in readings)


@pytest.mark.parametrize("transport", ["tcp", "pty"])
@pytest.mark.parametrize("line", ["7E1", "8N1"])
def test_sync_reader_values_equal_the_model(transport: Transport, line: str) -> None:
    with EmulatorThread(transport=transport, speed=SPEED, eight_bit=line == "8N1") as emu:
        readings = read_sync(emu.ports[0], 3, line=line, timing=timing())
        assert_model_values(readings, emu)
    assert {r.line for r in readings} == {LineMode(line)}


@pytest.mark.parametrize("transport", ["tcp", "pty"])
@pytest.mark.parametrize("line", ["7E1", "8N1"])
async def test_async_reader_values_equal_the_model(transport: Transport, line: str) -> None:
    async with Emulator(transport=transport, speed=SPEED, eight_bit=line == "8N1") as emu:
        readings = await read_async(emu.ports[0], 3, line=line, timing=timing())
        assert_model_values(readings, emu)


@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_default_line_mode_matches_the_emulator_default(transport: Transport) -> None:
    # TCP gateways deliver the parity bit (8N1), devices do parity themselves (7E1)
    with EmulatorThread(transport=transport, speed=SPEED) as emu:
        (reading,) = read_sync(emu.ports[0], 1, timing=timing())
        assert reading.meter_values() == emu.sent_values(0)[0]
    assert reading.line is (LineMode.EIGHT_N_ONE if transport == "tcp" else LineMode.SEVEN_E_ONE)


@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_xor_meter_read_in_auto_refused_in_sum7(transport: Transport) -> None:
    async with Emulator(transport=transport, speed=SPEED, bcc="xor") as emu:
        port = emu.ports[0]
        (reading,) = await read_async(port, 1, timing=timing())
        assert reading.bcc_algorithm is BccAlgorithm.XOR
        assert reading.meter_values() == emu.sent_values(0)[0]
        with pytest.raises(BccError) as caught:
            await read_async(port, 1, bcc="sum7", retries=3, timing=timing())
        assert caught.value.received == caught.value.xor
        assert len(emu.log(0)) == 2  # refused at once: retrying cannot help
        (reading,) = await read_async(port, 1, bcc="xor", timing=timing())
        assert reading.bcc_algorithm is BccAlgorithm.XOR


def test_sync_xor_meter_in_auto() -> None:
    with EmulatorThread(transport="pty", speed=SPEED, bcc="xor") as emu:
        readings = read_sync(emu.ports[0], 2, timing=timing())
        assert_model_values(readings, emu)
    assert {r.bcc_algorithm for r in readings} == {BccAlgorithm.XOR}


async def test_echoing_head() -> None:
    async with (
        Emulator(transport="tcp", speed=SPEED) as emu,
        EchoingHead(emu.ports[0]) as head,
    ):
        seen: list[int] = []
        readings = await read_async(
            head.port, 2, timing=timing(), progress=lambda got, _: seen.append(got)
        )
        assert_model_values(readings, emu)
    assert max(seen) == len(readings[-1].raw) + 5  # the echo was received, and skipped


@pytest.mark.parametrize(
    ("faults", "phase", "extra"),
    [
        ("silent=1", "answer", {}),
        ("late=1,late_delay=0.9", "answer", {}),
        ("truncate=1", "inter_character", {}),
        ("", "deadline", {"deadline": 0.3}),
    ],
)
@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_timeout_phases(
    transport: Transport, faults: str, phase: str, extra: dict[str, float]
) -> None:
    speed = 10.0  # a reply takes 0.56 s: longer than the deadline above
    async with Emulator(transport=transport, speed=speed, faults=faults, delay=0.02) as emu:
        with pytest.raises(ReadTimeout) as caught:
            await read_async(
                emu.ports[0],
                1,
                retries=0,
                timing=timing(speed, answer_timeout=0.3, answer_margin=0.05, **extra),
            )
    assert caught.value.phase == phase
    assert getattr(caught.value, "attempts", None) == 1


@pytest.mark.parametrize("transport", ["tcp", "pty"])
async def test_many_async_readers_at_once(transport: Transport) -> None:
    meters = 12
    async with Emulator(meters, transport=transport, speed=SPEED, delay=(0.02, 0.3)) as emu:

        async def one(port: str) -> list[Reading]:
            return await read_async(port, 2, timing=timing())

        results = await asyncio.gather(*(one(port) for port in emu.ports))
        for index, readings in enumerate(results):
            assert [r.meter_values() for r in readings] == emu.sent_values(index)
            assert [r.raw for r in readings] == emu.sent(index)
    customers = {readings[0].registers["customer_number"] for readings in results}
    assert len(customers) == meters


# -- fault injection ---------------------------------------------------------------------------

FAULT_SPEED = 1000.0
READS_PER_METER = 60
METERS_PER_EMULATOR = 3
TYPED = (ReadTimeout, ParityError, BccError, FramingError, ConnectionLost)
#: Faults that damage the characters of a reply. Any one of them alone is always caught (by
#: the 7-bit sum: one bit flipped, one character more or less or replaced by NUL; by parity
#: or the BCC itself), or leaves the data intact (``xor``). Two together can defeat any
#: 7-bit check (a character doubled and an equal one dropped elsewhere: same sum, same XOR),
#: so each emulator below injects at most one of them.
DATA_FAULTS = ("xor", "bcc", "flip", "parity", "double", "drop")
#: Faults of the answer's timing and extent: combined freely with the above.
LINE_FAULTS = ("truncate", "noise", "late", "silent")
#: One emulator per data fault (at 0.25) with every line fault (at 0.05), one with only the
#: line faults (at 0.15 each).
FAULT_MIXES = [
    ",".join([f"{kind}=0.25", *(f"{line}=0.05" for line in LINE_FAULTS)]) for kind in DATA_FAULTS
] + [",".join(f"{line}=0.15" for line in LINE_FAULTS)]


async def test_fault_injection_never_returns_a_corrupted_reading() -> None:
    """Thousands of readouts from emulators injecting every fault kind: every reading
    returned is exactly a reply the model sent, every failure a typed error, and retries
    recover the transient faults."""
    assert set(DATA_FAULTS + LINE_FAULTS) == set(FAULT_KINDS) - set(BLIND_KINDS)
    transports: tuple[Transport, ...] = ("tcp", "pty")
    emulators = [
        Emulator(
            METERS_PER_EMULATOR,
            transport=transport,
            speed=FAULT_SPEED,
            delay=0.02,
            faults=f"{mix},late_delay=0.65-0.7",
            seed=index,
        )
        for index, (mix, transport) in enumerate(
            (mix, transport) for mix in FAULT_MIXES for transport in transports
        )
    ]
    outcomes: dict[tuple[int, int], list[Reading | Kamstrup382Error]] = {}

    async def meter(e: int, m: int) -> None:
        results = outcomes.setdefault((e, m), [])
        async with AsyncReader(
            emulators[e].ports[m],
            retries=3,
            backoff=0.01,
            timing=timing(FAULT_SPEED, answer_timeout=0.25, answer_margin=0.1),
        ) as reader:
            for _ in range(READS_PER_METER):
                try:
                    results.append(await reader.read())
                except Kamstrup382Error as exc:
                    results.append(exc)

    for emu in emulators:
        await emu.start()
    try:
        await asyncio.gather(
            *(meter(e, m) for e in range(len(emulators)) for m in range(METERS_PER_EMULATOR))
        )
    finally:
        for emu in emulators:
            await emu.close()

    readouts = sum(len(emu.log(m)) for emu in emulators for m in range(METERS_PER_EMULATOR))
    assert readouts >= 3000
    seen_kinds = {
        k
        for emu in emulators
        for m in range(METERS_PER_EMULATOR)
        for r in emu.log(m)
        for k in r.kinds
    }
    assert seen_kinds == set(FAULT_KINDS) - set(BLIND_KINDS)

    faulty = retried = failed = readings = 0
    for (e, m), results in outcomes.items():
        log = emulators[e].log(m)
        faulty += sum(1 for r in log if r.faults)
        sent = {entry.clean[:-1]: entry.values for entry in log if entry.values is not None}
        for outcome in results:
            if isinstance(outcome, Reading):
                readings += 1
                # the reply as the model made it (an XOR-BCC reply differs only in the BCC)
                assert outcome.raw[:-1] in sent, (e, m, outcome.raw)
                assert outcome.meter_values() == sent[outcome.raw[:-1]]
                retried += outcome.attempts > 1
            else:
                failed += 1
                assert isinstance(outcome, TYPED), repr(outcome)
    assert readings + failed == len(emulators) * METERS_PER_EMULATOR * READS_PER_METER
    assert retried > 0
    # retries recover transient faults: far fewer readouts fail than replies were faulty
    assert failed < faulty / 10, (failed, faulty)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_broken_reply_is_let_pass_before_the_next_request(api: str) -> None:
    # Every reply has a parity error somewhere in its data block. The meter finishes each
    # reply whatever the reader thinks of it and does not listen meanwhile (half duplex):
    # a reader that sent its next request into the rest of the broken reply would get no
    # answer. Without retries the drain happens before the next read() instead.
    speed = 10.0
    with EmulatorThread(transport="tcp", speed=speed, faults="parity=1") as emu:
        options: dict[str, Any] = {"retries": 0, "timing": timing(speed, answer_margin=0.05)}
        outcomes: list[Exception] = []
        if api == "sync":
            with Reader(emu.ports[0], **options) as reader:
                for _ in range(2):
                    with pytest.raises(ParityError) as caught:
                        reader.read()
                    outcomes.append(caught.value)
        else:

            async def run() -> None:
                async with AsyncReader(emu.ports[0], **options) as reader:
                    for _ in range(2):
                        with pytest.raises(ParityError) as caught:
                            await reader.read()
                        outcomes.append(caught.value)

            asyncio.run(run())
        log = emu.log(0)
    assert len(outcomes) == 2
    assert len(log) == 2  # the second request was heard
    assert all(entry.kinds == ("parity",) for entry in log)


def test_serial_by_id_symlink(tmp_path: Path) -> None:
    # /dev/serial/by-id/... names are symlinks to the tty: read through one
    with EmulatorThread(transport="pty", speed=SPEED) as emu:
        link = tmp_path / "usb-FTDI_FT230X_Basic_UART_D30A1B2C-if00-port0"
        link.symlink_to(emu.ports[0])
        readings = read_sync(str(link), 1, timing=timing())
        readings += asyncio.run(read_async(str(link), 1, timing=timing()))
        assert [r.meter_values() for r in readings] == emu.sent_values(0)
    assert {r.port for r in readings} == {str(link)}


async def test_concurrent_reads_on_one_reader_take_turns() -> None:
    async with Emulator(transport="tcp", speed=SPEED) as emu:
        async with AsyncReader(emu.ports[0], timing=timing()) as reader:
            readings = await asyncio.gather(*(reader.read() for _ in range(3)))
        assert [r.meter_values() for r in readings] == emu.sent_values(0)
        assert all(r.attempts == 1 for r in readings)


def test_sync_reader_under_faults() -> None:
    """The blocking reader on both transports, a few hundred readouts with every line fault
    and one data fault: the same guarantees as the asyncio reader's."""
    reads = 100
    mix = "flip=0.2,truncate=0.05,noise=0.05,silent=0.05,late=0.03,late_delay=0.65-0.7"
    transports: tuple[Transport, ...] = ("tcp", "pty")
    with (
        EmulatorThread(transport=transports[0], speed=FAULT_SPEED, delay=0.02, faults=mix) as a,
        EmulatorThread(transport=transports[1], speed=FAULT_SPEED, delay=0.02, faults=mix) as b,
    ):
        emulators = [a, b]
        outcomes: list[list[Reading | Kamstrup382Error]] = [[], []]

        def run(index: int) -> None:
            with Reader(
                emulators[index].ports[0],
                retries=3,
                backoff=0.01,
                timing=timing(FAULT_SPEED, answer_timeout=0.25, answer_margin=0.1),
            ) as reader:
                for _ in range(reads):
                    try:
                        outcomes[index].append(reader.read())
                    except Kamstrup382Error as exc:
                        outcomes[index].append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        logs = [emu.log(0) for emu in emulators]

    for log, results in zip(logs, outcomes, strict=True):
        assert len(results) == reads
        assert {k for entry in log for k in entry.kinds} == {*LINE_FAULTS, "flip"}
        sent = {entry.clean: entry.values for entry in log if entry.values is not None}
        readings = [r for r in results if isinstance(r, Reading)]
        assert all(r.raw in sent and sent[r.raw] == r.meter_values() for r in readings)
        assert all(isinstance(r, TYPED) for r in results if not isinstance(r, Reading))
        assert any(r.attempts > 1 for r in readings)
        assert len(readings) > reads * 0.9
