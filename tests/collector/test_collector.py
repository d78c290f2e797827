"""The collector against emulated meters over TCP, into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import kamstrup382.collector.pool as pool_module
from kamstrup382.cli import main
from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.collector.schedule import slot_of
from kamstrup382.emulator import EmulatorThread
from kamstrup382.errors import UsageError
from kamstrup382.outputs.base import Output
from kamstrup382.reader import AsyncReader
from kamstrup382.storage import FailureRecord, ReadingRecord, Storage
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config, seen_before
from tests.collector.peer import ScriptedMeter
from tests.fixtures.emulator import ExampleMeter

SPEED = 200.0


def closed_port() -> str:
    """A loopback TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"socket://127.0.0.1:{port}"


def stored(url: str) -> list[ReadingRecord]:
    with open_storage(url) as storage:
        return list(storage.readings())


def overlaps(records: Sequence[ReadingRecord]) -> list[tuple[str, str]]:
    spans = sorted((r.read_at, r.read_at + timedelta(seconds=r.duration), r.meter) for r in records)
    return [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]


class RecordingOutput(Output):
    """An output that keeps what it was given and checks it is already stored."""

    name = "recording"

    def __init__(self, url: str, *, outbox: bool = False) -> None:
        self.url = url
        self.uses_outbox = outbox
        self.readings: list[ReadingRecord] = []
        self.failures: list[FailureRecord] = []
        self.unstored: list[str] = []
        self.started = self.stopped = False

    async def start(self, storage: Storage) -> None:
        self.started = True

    async def publish(
        self, readings: Sequence[ReadingRecord], failures: Sequence[FailureRecord]
    ) -> None:
        self.readings += readings
        self.failures += failures
        names = {r.meter for r in stored(self.url)}
        self.unstored += [r.meter for r in readings if r.meter not in names]

    async def stop(self) -> None:
        self.stopped = True


async def test_run_once_reads_every_meter_into_its_slot(storage_url: str) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 10, 7, 31, tzinfo=UTC))
    with EmulatorThread(meters=4, transport="tcp", speed=SPEED, delay=0.02) as emu:
        config = make_config(storage_url, emu.ports)
        output = RecordingOutput(storage_url)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, [output], clock=clock) as collector:
                result = await collector.run_once()
        sent = [emu.sent_values(i)[-1] for i in range(4)]
    assert result.ok
    assert sorted(r.meter for r in result.readings) == ["m0", "m1", "m2", "m3"]
    rows = {r.meter: r for r in stored(storage_url)}
    assert sorted(rows) == ["m0", "m1", "m2", "m3"]
    for index in range(4):
        row = rows[f"m{index}"]
        assert row.slot == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        assert row.values == sent[index]
        assert row.identification.startswith("KAM ")
        assert row.bcc_algorithm == "sum7"
        # a meter's first reading: nothing to compare it with, heard in three attempts
        assert row.attempts == 3
        assert row.raw.startswith(b"/KAM") and len(row.raw) == 167
        assert 0 < row.answer_delay < row.duration
    assert output.started and output.stopped
    assert sorted(r.meter for r in output.readings) == ["m0", "m1", "m2", "m3"]
    assert output.unstored == []


async def test_meters_on_one_shared_line_are_never_read_at_once(storage_url: str) -> None:
    with EmulatorThread(meters=6, transport="tcp", speed=SPEED, delay=0.02) as emu:
        shared = {i: 'shared_line = "bus"' for i in range(3)}
        config = make_config(storage_url, emu.ports, meter_extra=shared)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage) as collector:
                result = await collector.run_once()
    assert result.ok
    rows = stored(storage_url)
    on_bus = [r for r in rows if r.meter in ("m0", "m1", "m2")]
    alone = [r for r in rows if r.meter in ("m3", "m4", "m5")]
    assert len(on_bus) == 3 and len(alone) == 3
    assert overlaps(on_bus) == []
    # the lines themselves run in parallel: meters on their own lines overlap in time
    assert overlaps(alone) != []


async def test_retries_and_failure_rows_carry_the_error_kind(storage_url: str) -> None:
    emulated = {"meters": 1, "transport": "tcp", "speed": SPEED, "delay": 0.02}
    with (
        EmulatorThread(**emulated, faults="silent=1") as mute,
        EmulatorThread(**emulated, faults="bcc=1") as corrupt,
        ExampleMeter(("silent",), (), speed=SPEED) as flaky,
    ):
        ports = [flaky.port, mute.ports[0], corrupt.ports[0], closed_port()]
        # one retry configured: the collector gives every reader two (a first reading is
        # heard in three attempts)
        config = make_config(storage_url, ports, retries=1)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage) as collector:
                seen_before(collector, ["m0"])  # its answer needs no confirming
                result = await collector.run_once()
            attempts = list(storage.attempts())
        assert flaky.requests == 2
        assert [entry.silent for entry in flaky.emulator.log(0)] == [True, False]
        assert [entry.silent for entry in mute.log(0)] == [True, True, True]
        assert [entry.kinds for entry in corrupt.log(0)] == [("bcc",), ("bcc",), ("bcc",)]
    assert not result.ok
    (reading,) = result.readings
    assert reading.meter == "m0" and reading.attempts == 2
    kinds = {f.meter: f.kind for f in result.failures}
    assert kinds == {"m1": "timeout", "m2": "bcc", "m3": "connection"}
    assert all(f.attempts == 3 for f in result.failures)
    assert sorted(result.summary())[0].startswith("m1: timeout: ")
    logged = {(a.meter, a.ok, a.kind) for a in attempts}
    assert logged == {
        ("m0", True, None),
        ("m1", False, "timeout"),
        ("m2", False, "bcc"),
        ("m3", False, "connection"),
    }


async def test_outbox_outputs_queue_every_new_reading(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/o.sqlite"
    with EmulatorThread(meters=3, transport="tcp", speed=SPEED, delay=0.02) as emu:
        config = make_config(url, emu.ports)
        output = RecordingOutput(url, outbox=True)
        with open_storage(url) as storage:
            async with Collector(config, storage, [output]) as collector:
                await collector.run_once()
            pending = storage.outbox_pending(10, output="recording")
            assert storage.outbox_pending(10) == []  # MQTT's queue: no MQTT output here
    assert sorted(record.meter for _, record in pending) == ["m0", "m1", "m2"]


async def test_run_reads_each_slot_once_on_schedule(storage_url: str) -> None:
    with EmulatorThread(meters=3, transport="tcp", speed=SPEED, delay=0.02) as emu:
        config = make_config(storage_url, emu.ports, interval=1)
        with open_storage(storage_url) as storage:
            collector = Collector(config, storage)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.call_later(2.6, stop.set)
            await collector.run(stop)
    rows = stored(storage_url)
    slots = sorted({r.slot for r in rows})
    assert len(slots) >= 2
    for slot in slots:
        assert slot == slot_of(slot, timedelta(seconds=1))
    for slot in slots[1:]:  # the first slot may have begun before the collector
        assert sorted(r.meter for r in rows if r.slot == slot) == ["m0", "m1", "m2"]
        assert all(slot <= r.read_at < slot + timedelta(seconds=1) for r in rows if r.slot == slot)


async def test_collectors_sharing_postgres_split_the_meters(postgres_db_url: str) -> None:
    """Two collectors, one PostgreSQL: every meter read by exactly one of them."""
    with EmulatorThread(meters=20, transport="tcp", speed=SPEED, delay=0.02) as emu:
        config = make_config(postgres_db_url, emu.ports, lease=5)
        with open_storage(postgres_db_url) as first, open_storage(postgres_db_url) as second:
            async with (
                Collector(config, first, collector_id="a") as a,
                Collector(config, second, collector_id="b") as b,
            ):
                result_a, result_b = await asyncio.gather(a.run_once(), b.run_once())
    read_a = {r.meter for r in result_a.readings}
    read_b = {r.meter for r in result_b.readings}
    assert read_a.isdisjoint(read_b)
    assert read_a | read_b == {f"m{i}" for i in range(20)}
    assert set(result_a.elsewhere) == read_b
    rows = stored(postgres_db_url)
    assert len(rows) == 20


async def test_stop_during_readouts_abandons_them_without_rows(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/s.sqlite"
    # true speed: a readout takes about 6 s, far longer than the grace below
    with EmulatorThread(meters=2, transport="tcp", speed=1.0, delay=0.02) as emu:
        config = make_config(url, emu.ports, grace=0.2)
        with open_storage(url) as storage:
            collector = Collector(config, storage)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.5, stop.set)
            await collector.run(stop)
            assert list(storage.attempts()) == []
        # both readouts had begun and were cut short: abandoned, not waited for
        logs = [emu.log(i) for i in range(2)]
    assert [len(log) for log in logs] == [1, 1]
    assert not any(readout.complete for log in logs for readout in log)


async def test_the_bcc_algorithm_learned_is_the_next_readers_hint(storage_url: str) -> None:
    """A damaged telegram whose check character is the other algorithm's (1 in 128) is refused
    once the meter's algorithm is known: remembered between cycles, loaded from the storage
    after a restart. Without the hint the fresh reader of each readout takes it for SUM7."""
    clock = ManualClock(datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC))
    script = ("xor", "xor_damaged", "xor", "xor_damaged", "xor")
    async with ScriptedMeter(*script) as meter:
        config = make_config(storage_url, [meter.port], retries=1)
        results = []
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                seen_before(collector, ["m0"])
                results.append(await collector.run_once())  # learns XOR
                clock.advance(timedelta(minutes=15))
                results.append(await collector.run_once())  # damaged: refused, then read again
            clock.advance(timedelta(minutes=15))
            async with Collector(config, storage, clock=clock) as restarted:
                results.append(await restarted.run_once())  # the hint comes from the storage
        assert meter.requests == 5
    for result, attempts in zip(results, (1, 2, 2), strict=True):
        (record,) = result.readings
        assert record.bcc_algorithm == "xor"
        assert record.values.energy == 53  # never the damaged 58
        assert record.attempts == attempts
    assert [r.values.energy for r in stored(storage_url)] == [53, 53, 53]


async def test_a_meter_whose_turn_comes_after_its_slot_ended_is_stored_as_missed(
    storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two meters on one line; the first one's readout runs past the slot's end (the test
    moves the clock while the meter holds its reply): the second is not read in that slot,
    and a failure of kind ``missed`` says so where status and health plots look."""
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    clock = ManualClock(slot)
    async with ScriptedMeter("gated", "answer") as slow, ExampleMeter() as other:
        bus = 'shared_line = "bus"'
        config = make_config(
            storage_url, [slow.port, other.port], meter_extra={0: bus, 1: bus}, answer_timeout=5
        )
        output = RecordingOutput(storage_url)
        with open_storage(storage_url) as storage:
            collector = Collector(config, storage, [output], clock=clock)
            stop = asyncio.Event()
            running = asyncio.create_task(collector.run(stop))
            try:
                await until(lambda: slow.requests == 1)
                clock.advance(timedelta(minutes=15))  # the slot ends during m0's readout
                slow.gate.set()
                await until(lambda: any(f.kind == "missed" for f in output.failures))
            finally:
                stop.set()
                await running
            status = {s.meter: s for s in storage.status()}
            health = [a for a in storage.attempts() if a.slot == slot]
    (missed,) = [f for f in output.failures if f.kind == "missed"]
    assert (missed.meter, missed.slot, missed.attempts) == ("m1", slot, 0)
    assert missed.failed_at >= slot + timedelta(minutes=15)
    assert missed.message == (
        "not read in slot 2026-03-01T10:00:00+00:00: line bus was busy until the slot ended "
        "(the readout of m0 ran until 2026-03-01T10:15:00+00:00, "
        "the slot ended at 2026-03-01T10:15:00+00:00)"
    )
    assert sorted((a.meter, a.ok, a.kind) for a in health) == [
        ("m0", True, None),
        ("m1", False, "missed"),
    ]
    assert status["m1"].last_error_kind == "missed"
    assert main(["status", "--storage", storage_url, "--json"]) == 0
    shown = {s["meter"]: s for s in json.loads(capsys.readouterr().out)}
    assert shown["m1"]["last_error"]["kind"] == "missed"
    assert shown["m1"]["last_error"]["message"] == missed.message


async def test_an_error_without_an_attempt_count_is_still_a_failure_row(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error raised outside the reader's retries carries ``attempts = None``: the failure
    row counts the collector's one attempt (``int(None)`` used to end the whole cycle)."""
    url = f"sqlite:///{tmp_path}/a.sqlite"

    class UnusableReader(AsyncReader):
        def __init__(self, port: str, **options: Any) -> None:
            raise UsageError(f"cannot use {port}")

    monkeypatch.setattr(pool_module, "AsyncReader", UnusableReader)
    config = make_config(url, [closed_port()])
    with open_storage(url) as storage:
        async with Collector(config, storage) as collector:
            result = await collector.run_once()
        attempts = list(storage.attempts())
    (failure,) = result.failures
    assert (failure.kind, failure.attempts) == ("usage", 1)
    assert failure.message.startswith("cannot use socket://127.0.0.1:")
    assert [(a.ok, a.kind, a.attempts) for a in attempts] == [(False, "usage", 1)]


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (a guard of 60 s against a hung test)."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - a poll of another component's state
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), 60)


async def test_run_connects_ahead_of_the_slot_and_sends_the_request_at_the_slot(
    storage_url: str,
) -> None:
    """With a 1 min interval the meter is connected 5 s (CONNECT_AHEAD) before the slot, under
    its line's lock; the request goes out at the slot boundary."""
    clock = ManualClock(datetime(2026, 1, 1, 11, 59, 50, tzinfo=UTC))
    boundary = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    events: list[tuple[str, datetime]] = []

    async def until(count: int, event: str) -> None:
        for _ in range(10_000):
            if sum(1 for e, _ in events if e == event) >= count:
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"no {event} #{count}: {events}")

    async with ScriptedMeter("answer") as meter:
        meter.on_event = lambda event: events.append((event, clock.now()))
        config = make_config(storage_url, [meter.port], interval=60)
        with open_storage(storage_url) as storage:
            collector = Collector(config, storage, clock=clock)
            seen_before(collector, ["m0"])
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run(stop))
            await until(1, "request")  # the current slot (11:59) is read at once
            assert events == [("connect", clock.now()), ("request", clock.now())]
            clock.set(boundary - timedelta(seconds=4))  # within the 5 s ahead of 12:00
            await until(2, "connect")
            await asyncio.sleep(0.05)
            assert [e for e, _ in events] == ["connect", "request", "connect"]  # no request yet
            clock.set(boundary)
            await until(2, "request")
            stop.set()
            await task
    assert events[2:] == [("connect", boundary - timedelta(seconds=4)), ("request", boundary)]
    rows = stored(storage_url)
    assert sorted(r.slot for r in rows) == [boundary - timedelta(minutes=1), boundary]
    assert [r.read_at for r in rows if r.slot == boundary] == [boundary]


async def test_stop_while_connected_ahead_sends_no_request_and_stores_nothing(
    storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(datetime(2026, 1, 1, 11, 59, 58, tzinfo=UTC))
    events: list[str] = []
    async with ScriptedMeter("answer") as meter:
        meter.on_event = events.append
        config = make_config(storage_url, [meter.port], interval=60, grace=5)
        with open_storage(storage_url) as storage:
            collector = Collector(config, storage, clock=clock)
            seen_before(collector, ["m0"])
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run(stop))
            for _ in range(10_000):  # the current slot, then the next one connected ahead
                if events.count("connect") == 2:
                    break
                await asyncio.sleep(0.001)
            stop.set()
            await task  # without waiting for the 12:00 boundary (the clock stands still)
    assert events == ["connect", "request", "connect"]
    assert [r.slot.minute for r in stored(storage_url)] == [59]
    # the waiting readout stopped at once, it was not abandoned after the grace
    assert not [r for r in caplog.records if "abandoned" in r.getMessage()]


async def test_run_once_at_connects_first_and_sends_the_requests_at_that_time(
    storage_url: str,
) -> None:
    clock = ManualClock(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
    at = clock.now() + timedelta(seconds=3)
    events: list[tuple[str, datetime]] = []
    async with ScriptedMeter("answer") as first, ScriptedMeter("answer") as second:
        for meter in (first, second):
            meter.on_event = lambda event: events.append((event, clock.now()))
        config = make_config(storage_url, [first.port, second.port], interval=60)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                seen_before(collector, ["m0", "m1"])
                task = asyncio.create_task(collector.run_once(at=at))
                for _ in range(10_000):
                    if len(events) == 2:
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.05)
                assert events == [("connect", at - timedelta(seconds=3))] * 2  # no request yet
                clock.set(at)
                result = await task
    assert sorted(e for e in events if e[0] == "request") == [("request", at)] * 2
    assert sorted(r.read_at for r in result.readings) == [at, at]
    assert {r.slot for r in result.readings} == {datetime(2026, 1, 1, 12, 0, tzinfo=UTC)}


async def test_keep_connected_reads_slot_after_slot_over_one_connection(
    storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With SQLite; with PostgreSQL (meters shared through leases) the setting is ignored, with
    a warning: a gateway would refuse another collector's connection while this one holds it."""
    shared = storage_url.startswith("postgresql")
    clock = ManualClock(datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC))
    async with ScriptedMeter("answer") as meter:
        config = make_config(storage_url, [meter.port], retries=0, keep_connected=True)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                seen_before(collector, ["m0"])
                for _ in range(3):
                    result = await collector.run_once()
                    assert result.ok, result.summary()
                    clock.advance(timedelta(minutes=15))
                assert meter.connected == (0 if shared else 1)  # open between the slots
            # closed with the collector
            await until(lambda: meter.connected == 0)
    if shared:
        assert meter.events == ["connect", "request"] * 3
        assert "keep_connected is ignored with PostgreSQL" in caplog.text
    else:
        assert meter.events == ["connect", "request", "request", "request"]
        assert "keep_connected" not in caplog.text
    assert len(stored(storage_url)) == 3


async def test_keep_connected_opens_again_a_connection_the_gateway_closed(tmp_path: Path) -> None:
    """Closed by the gateway between two slots: opened again before the next readout, which
    then succeeds at its first attempt (no retries here)."""
    storage_url = f"sqlite:///{tmp_path / 'readings.sqlite'}"  # keep_connected: not with leases
    clock = ManualClock(datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC))
    async with ScriptedMeter("answer") as meter:
        config = make_config(storage_url, [meter.port], retries=0, keep_connected=True)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                seen_before(collector, ["m0"])
                first = await collector.run_once()
                meter.drop()
                await until(lambda: meter.connected == 0)
                await asyncio.sleep(0.05)  # the collector's side sees the close
                clock.advance(timedelta(minutes=15))
                second = await collector.run_once()
    assert first.ok and second.ok, (first.summary(), second.summary())
    assert [r.attempts for r in (*first.readings, *second.readings)] == [1, 1]
    assert meter.events == ["connect", "request", "connect", "request"]


async def test_without_keep_connected_or_on_a_shared_line_each_readout_connects(
    tmp_path: Path,
) -> None:
    storage_url = f"sqlite:///{tmp_path / 'readings.sqlite'}"  # keep_connected: not with leases
    clock = ManualClock(datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC))
    async with (
        ScriptedMeter("answer") as alone,
        ScriptedMeter("answer") as bus_a,
        ScriptedMeter("answer") as bus_b,
        ScriptedMeter("answer") as default,
    ):
        shared = {1: 'shared_line = "bus"', 2: 'shared_line = "bus"'}
        kept = make_config(
            storage_url,
            [alone.port, bus_a.port, bus_b.port],
            retries=0,
            keep_connected=True,
            meter_extra=shared,
        )
        with open_storage(storage_url) as storage:
            async with Collector(kept, storage, clock=clock) as collector:
                seen_before(collector, ["m0", "m1", "m2"])
                for _ in range(2):
                    assert (await collector.run_once()).ok
                    clock.advance(timedelta(minutes=15))
                await until(lambda: bus_a.connected == bus_b.connected == 0)
                assert alone.connected == 1
            # keep_connected is off by default: closed after each readout
            plain = make_config(storage_url, [default.port], retries=0)
            async with Collector(plain, storage, clock=clock) as collector:
                seen_before(collector, ["m0"])
                assert (await collector.run_once()).ok
                await until(lambda: default.connected == 0)
    assert alone.events == ["connect", "request", "request"]
    assert bus_a.events == bus_b.events == ["connect", "request", "connect", "request"]


async def test_keep_connected_cancelled_mid_readout_does_not_reuse_that_connection(
    tmp_path: Path,
) -> None:
    """A readout abandoned half-way (shutdown) leaves the line in an unknown state: the
    connection is not used again, and it is closed with the collector."""
    storage_url = f"sqlite:///{tmp_path / 'readings.sqlite'}"  # keep_connected: not with leases
    clock = ManualClock(datetime(2026, 3, 1, 10, 0, 1, tzinfo=UTC))
    async with ScriptedMeter("gated", "answer") as meter:
        config = make_config(storage_url, [meter.port], retries=0, keep_connected=True)
        with open_storage(storage_url) as storage:
            async with Collector(config, storage, clock=clock) as collector:
                seen_before(collector, ["m0"])
                stuck = asyncio.create_task(collector.run_once())
                await until(lambda: meter.events == ["connect", "request"])
                stuck.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await stuck
                meter.gate.set()  # its late reply goes to the abandoned connection
                clock.advance(timedelta(minutes=15))
                result = await collector.run_once()
                assert result.ok, result.summary()
            await until(lambda: meter.connected == 0)
    assert meter.events == ["connect", "request", "connect", "request"]
