"""The stop MQTT and InfluxDB share (:class:`~kamstrup382.outputs.outbox_worker.OutboxWorker`):
against a server that takes the connection and never answers, each output gives its queue
``stop_timeout`` seconds, says so in its own words, leaves (MQTT after its grace), gives back
its claims and ends ``stopped``; a worker that failed is logged and the closing still runs,
also when the stop itself is cancelled."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kamstrup382.outputs.health import STOPPED, read_health
from kamstrup382.outputs.influxdb import InfluxOutput
from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.outputs.outbox_worker import OutboxWorker, WorkerLog
from kamstrup382.storage import Storage

from .helpers import PATIENCE, reading

#: The test's own holder: claims it can take at once are claims nobody else holds.
OTHER = "k382-other"


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never sends a byte (a hung broker or
    InfluxDB); its port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


@dataclass(frozen=True)
class Case:
    """One output against the silent server: how to build it, the log's words, and how long
    its stop may take at the most (``stop_timeout``, its grace, a margin)."""

    make: Callable[[int, Path], MqttOutput | InfluxOutput]
    logger: str
    warning: str
    longest: float


CASES = {
    "mqtt": Case(
        lambda port, tmp: MqttOutput.from_config(
            {
                "url": f"mqtt://127.0.0.1:{port}",
                "client_id": "k382-stop",
                "timeout": 1,
                "stop_timeout": 0.2,
                "state_file": str(tmp / "mqtt.json"),
            },
            ["house"],
        ),
        "kamstrup382.outputs.mqtt",
        "mqtt: outbox not flushed within 0.2 s; the rest waits for the next start",
        0.2 + 1 + 1.5,
    ),
    "influxdb": Case(
        lambda port, tmp: InfluxOutput.from_config(
            {
                "url": f"http://127.0.0.1:{port}",
                "database": "k382",
                "client_id": "k382-stop",
                "timeout": 1,
                "stop_timeout": 0.2,
                "state_file": str(tmp / "influxdb.json"),
            }
        ),
        "kamstrup382.outputs.influxdb",
        "influxdb: queue not written within 0.2 s; the rest waits for the next start",
        0.2 + 1.5,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_a_stop_against_a_silent_server_is_bounded_and_gives_everything_back(
    name: str,
    silent_server: int,
    storage: Storage,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = CASES[name]
    output = case.make(silent_server, tmp_path)
    records = [reading("house", i) for i in range(3)]
    await asyncio.to_thread(storage.record, records, outbox=[output.name])
    # a round cut short before this start left the output's claims on its queue
    claimed = await asyncio.to_thread(
        storage.outbox_pending, 10, holder="k382-stop", output=output.name
    )
    assert len(claimed) == 3
    await output.start(storage)
    await output.publish(records, [])
    await asyncio.sleep(0.1)  # connected to the silent server, waiting for its answer
    caplog.set_level(logging.WARNING, logger=case.logger)
    began = time.monotonic()
    await asyncio.wait_for(output.stop(), PATIENCE)
    took = time.monotonic() - began
    assert 0.2 <= took < case.longest
    said = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert (case.logger, logging.WARNING, case.warning) in said
    assert output.state == STOPPED
    health = read_health(tmp_path / f"{name}.json")
    assert health is not None and health.state == STOPPED
    # nothing published, nothing lost, and no claim left behind: another collector takes the
    # three entries at once
    assert storage.outbox_backlog(output.name)[0] == 3
    other = await asyncio.to_thread(storage.outbox_pending, 10, holder=OTHER, output=output.name)
    assert [record for _, record in other] == [record for _, record in claimed]
    await output.stop()  # a second stop: nothing to do


class Worker(OutboxWorker):
    """The smallest output with a worker: its task runs ``work``; ``closed`` counts the
    closings."""

    name = "mqtt"
    worker_log = WorkerLog(
        logging.getLogger("tests.worker"), queue="outbox", worker="task", unflushed="not done"
    )

    def __init__(self, work: Callable[[Worker], object]) -> None:
        self._keep_worker(None)
        self.work = work
        self.closed = 0

    def _client_id(self) -> str:
        return "k382-worker"

    def _counters(self) -> dict[str, int]:
        return {}

    async def start(self, storage: Storage) -> None:
        await self._begin(storage)

        async def run() -> None:
            result = self.work(self)
            if asyncio.iscoroutine(result):
                await result

        self._run_in_background(run(), "k382-test-worker")

    async def closing(self) -> None:
        self.closed += 1


async def test_a_failed_worker_is_logged_and_the_closing_runs(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail(worker: Worker) -> None:
        assert worker._stop_event is not None
        await worker._stop_event.wait()
        raise RuntimeError("broken")

    worker = Worker(fail)
    await worker.start(storage)
    caplog.set_level(logging.ERROR, logger="tests.worker")
    await worker._stop_worker(5, finish=worker.closing)
    [record] = caplog.records
    assert record.getMessage() == "mqtt: task failed" and record.exc_info is not None
    assert worker.closed == 1 and worker._task is None


async def test_abandon_then_grace_then_cancel(storage: Storage) -> None:
    """Past ``stop_timeout`` the task is told to abandon and given ``grace``; one that does
    not leave is cancelled; one that leaves in time is not."""
    seen: list[str] = []

    async def stubborn(worker: Worker) -> None:
        try:
            while True:
                await asyncio.sleep(0.01)
                if worker._abandon and "abandon" not in seen:
                    seen.append("abandon")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    worker = Worker(stubborn)
    await worker.start(storage)
    began = time.monotonic()
    await worker._stop_worker(0.1, grace=0.2, finish=worker.closing)
    assert 0.3 <= time.monotonic() - began < 0.3 + PATIENCE / 10
    assert seen == ["abandon", "cancelled"] and worker.closed == 1

    async def polite(worker: Worker) -> None:
        while not worker._abandon:  # noqa: ASYNC110 - the flag the stop sets, as MQTT's
            await asyncio.sleep(0.01)
        seen.append("left")

    seen.clear()
    worker = Worker(polite)
    await worker.start(storage)
    await worker._stop_worker(0.1, grace=5, finish=worker.closing)
    assert seen == ["left"] and worker.closed == 1


async def test_a_cancelled_stop_still_closes(storage: Storage) -> None:
    async def forever(worker: Worker) -> None:
        await asyncio.Event().wait()

    worker = Worker(forever)
    await worker.start(storage)
    stopping = asyncio.create_task(worker._stop_worker(30, finish=worker.closing))
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert worker.closed == 1
