"""The collector's :class:`BatchWriter` against a fake storage, without a database.

What is tested: a full batch goes to the storage thread from ``put`` itself; a partial batch
is stored after ``flush_interval`` (not before) and at once on ``drain``; under storage
failures the batches are stored exactly once each and in the order they were put; outputs get
every stored batch (readings and failures apart), after it is stored, and a failing output does
not stop the writer; ``close`` gives up on a storage that keeps failing after a bounded number
of tries (``test_spill.py`` has what it then does with them: the journal, against SQLite);
``drain`` returns at once with nothing to store, raises when the writer's task died, and waits
for results put while it waits; ``stored`` counts only what was stored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar, cast

import pytest

from kamstrup382.collector.writer import BatchWriter
from kamstrup382.errors import StorageError
from kamstrup382.outputs.base import Output
from kamstrup382.storage import FailureRecord, ReadingRecord, Storage
from tests.storage.samples import failure, reading

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: A guard against a hung writer, not a speed requirement.
PATIENCE = 10.0
LOGGER = "kamstrup382.collector.writer"


def result(index: int) -> ReadingRecord | FailureRecord:
    """The ``index``-th result put: a reading of meter ``m<index>`` when even, else a failure.

    With ``batch_size`` 2 a batch is one reading then one failure, so the meters of the
    batches stored, readings first (as ``Storage.record`` takes them), are in put order.
    """
    meter = f"m{index}"
    return reading(meter, index) if index % 2 == 0 else failure(meter, index)


def meters(records: Sequence[ReadingRecord | FailureRecord]) -> list[str]:
    return [r.meter for r in records]


class FakeStorage:
    """Only what the writer calls (``record``), in memory; fails on demand.

    ``fail(meters, tries)`` says whether the call storing the batch of ``meters`` fails (with
    ``error``); ``tries`` counts the calls for that batch before this one. ``gate``, when given,
    holds every call until it is set.
    """

    def __init__(
        self,
        *,
        fail: Callable[[list[str], int], bool] | None = None,
        error: Callable[[str], Exception] = StorageError,
        gate: threading.Event | None = None,
    ) -> None:
        self.fail = fail
        self.error = error
        self.gate = gate
        #: Every call, in order: the meters of its batch and whether it stored them.
        self.calls: list[tuple[list[str], bool]] = []
        #: The batches stored, in order: their meters (readings first), and when.
        self.batches: list[list[str]] = []
        self.stored_at: list[float] = []
        self.outbox: list[Sequence[str] | bool] = []
        self.threads: set[int] = set()
        self.overlapped = False  # two calls at once: the writer must never do that
        self.called = threading.Event()  # set after the first batch is stored
        self._busy = threading.Lock()

    def record(
        self,
        readings: Sequence[ReadingRecord],
        failures: Sequence[FailureRecord] = (),
        *,
        outbox: Sequence[str] | bool = (),
    ) -> int:
        if not self._busy.acquire(blocking=False):
            self.overlapped = True
            self._busy.acquire()
        try:
            self.threads.add(threading.get_ident())
            if self.gate is not None:
                self.gate.wait(PATIENCE)
            batch = meters(readings) + meters(failures)
            tries = sum(1 for called, _ in self.calls if called == batch)
            if self.fail is not None and self.fail(batch, tries):
                self.calls.append((batch, False))
                raise self.error(f"storing {batch} failed (try {tries + 1})")
            self.calls.append((batch, True))
            self.batches.append(batch)
            self.stored_at.append(time.monotonic())
            self.outbox.append(outbox)
            self.called.set()
            return len(readings)
        finally:
            self._busy.release()

    @property
    def stored_meters(self) -> list[str]:
        return [meter for batch in self.batches for meter in batch]

    def tries(self, batch: list[str]) -> int:
        return sum(1 for called, _ in self.calls if called == batch)


class RecordingExecutor(Executor):
    """A real single-thread executor that keeps the functions submitted to it."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-storage")
        self.jobs: list[Callable[..., object]] = []

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        self.jobs.append(fn)
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


class RecordingOutput(Output):
    """Keeps what it is given, and which of it the storage had already stored then."""

    name = "recording"

    def __init__(self, storage: FakeStorage, *, outbox: bool = False) -> None:
        self.storage = storage
        self.uses_outbox = outbox
        #: Per publish: the meters of the readings and of the failures.
        self.published: list[tuple[list[str], list[str]]] = []
        self.records: list[ReadingRecord | FailureRecord] = []
        self.unstored: list[str] = []  # published before they were stored
        self.event = asyncio.Event()  # set on every publish

    async def publish(
        self, readings: Sequence[ReadingRecord], failures: Sequence[FailureRecord]
    ) -> None:
        await asyncio.sleep(0.001)  # a real output yields: drain must still wait for it
        assert all(isinstance(r, ReadingRecord) for r in readings)
        assert all(isinstance(f, FailureRecord) for f in failures)
        self.published.append((meters(readings), meters(failures)))
        self.records += [*readings, *failures]
        stored = set(self.storage.stored_meters)
        self.unstored += [m for m in meters(readings) + meters(failures) if m not in stored]
        self.event.set()


class BrokenOutput(Output):
    """An output that raises ``error`` on every publish."""

    name = "broken"

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    async def publish(
        self, readings: Sequence[ReadingRecord], failures: Sequence[FailureRecord]
    ) -> None:
        self.calls += 1
        raise self.error


class Fatal(BaseException):
    """Not an ``Exception``: nothing in the writer catches it, its task dies of it."""


@pytest.fixture
def executor() -> Iterator[RecordingExecutor]:
    with RecordingExecutor() as pool:
        yield pool


def make_writer(
    storage: FakeStorage,
    executor: Executor,
    outputs: Sequence[Output] = (),
    *,
    batch_size: int = 2,
    flush_interval: float = 30.0,
    retry_delay: float = 0.01,
) -> BatchWriter:
    return BatchWriter(
        cast(Storage, storage),
        outputs,
        executor,
        batch_size=batch_size,
        flush_interval=flush_interval,
        retry_delay=retry_delay,
    )


@asynccontextmanager
async def running(writer: BatchWriter) -> AsyncIterator[BatchWriter]:
    writer.start()
    try:
        yield writer
    finally:
        await asyncio.wait_for(writer.close(), PATIENCE)


async def drain(writer: BatchWriter) -> None:
    await asyncio.wait_for(writer.drain(), PATIENCE)


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds: state of the storage thread, polled."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - a poll of another thread's state
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), PATIENCE)


# -- batching ------------------------------------------------------------------------------------


async def test_a_full_batch_goes_to_the_storage_thread_from_put_itself(
    executor: RecordingExecutor,
) -> None:
    storage = FakeStorage()
    writer = make_writer(storage, executor, batch_size=3)
    async with running(writer):
        writer.put(result(0))
        writer.put(result(1))
        assert executor.jobs == []  # a partial batch waits
        writer.put(result(2))
        # no await since the third put: the batch is with the executor already, and the
        # storage thread stores it while the event loop is blocked here
        assert len(executor.jobs) == 1
        assert storage.called.wait(PATIENCE)
        assert storage.batches == [["m0", "m2", "m1"]]
        await drain(writer)
    assert writer.stored == 3
    assert len(storage.threads) == 1
    assert not storage.overlapped


async def test_a_partial_batch_is_stored_after_flush_interval_and_not_before(
    executor: RecordingExecutor,
) -> None:
    flush = 0.4
    storage = FakeStorage()
    output = RecordingOutput(storage)
    writer = make_writer(storage, executor, [output], batch_size=10, flush_interval=flush)
    async with running(writer):
        start = time.monotonic()
        writer.put(result(0))
        writer.put(result(1))
        await asyncio.sleep(flush * 0.6)
        writer.put(result(2))  # does not restart the clock of the batch's first result
        await asyncio.sleep(flush * 0.2)
        assert executor.jobs == []
        assert storage.batches == []
        await asyncio.wait_for(output.event.wait(), PATIENCE)
        waited = storage.stored_at[0] - start
    assert storage.batches == [["m0", "m2", "m1"]]
    assert flush - 0.01 <= waited < flush * 1.5
    assert writer.stored == 3


async def test_drain_stores_a_partial_batch_at_once(executor: RecordingExecutor) -> None:
    storage = FakeStorage()
    writer = make_writer(storage, executor, batch_size=10, flush_interval=30.0)
    async with running(writer):
        for index in range(3):
            writer.put(result(index))
        start = time.monotonic()
        await drain(writer)
        elapsed = time.monotonic() - start
        assert storage.batches == [["m0", "m2", "m1"]]
        assert writer.stored == 3
    assert elapsed < 5.0  # not the 30 s of flush_interval


async def test_the_clock_of_a_partial_batch_starts_with_its_first_result_after_a_full_one(
    executor: RecordingExecutor,
) -> None:
    storage = FakeStorage()
    output = RecordingOutput(storage)
    writer = make_writer(storage, executor, [output], batch_size=2, flush_interval=0.2)
    async with running(writer):
        for index in range(3):  # one full batch, then a partial one
            writer.put(result(index))
        await asyncio.wait_for(output.event.wait(), PATIENCE)
        output.event.clear()
        assert storage.batches == [["m0", "m1"]]
        await asyncio.wait_for(output.event.wait(), PATIENCE)
        assert storage.batches == [["m0", "m1"], ["m2"]]


# -- order and no loss under failure --------------------------------------------------------


@pytest.mark.parametrize("error", [StorageError, RuntimeError], ids=["storage-error", "bug"])
@pytest.mark.parametrize("pause", [None, 0.004], ids=["back-to-back", "spread"])
@pytest.mark.parametrize(("failing", "failures"), [("m0", 1), ("m4", 3), ("m8", 2)])
async def test_batches_are_stored_once_each_and_in_order_when_one_fails(
    executor: RecordingExecutor,
    failing: str,
    failures: int,
    pause: float | None,
    error: Callable[[str], Exception],
) -> None:
    def fail(batch: list[str], tries: int) -> bool:
        return failing in batch and tries < failures

    storage = FakeStorage(fail=fail, error=error)
    output = RecordingOutput(storage)
    writer = make_writer(storage, executor, [output], batch_size=2, retry_delay=0.01)
    async with running(writer):
        for index in range(10):
            writer.put(result(index))
            if pause is not None:  # later batches come while the failing one is tried again
                await asyncio.sleep(pause)
        await drain(writer)
        put = [f"m{index}" for index in range(10)]
        assert storage.stored_meters == put  # every result once, batches in put order
        assert writer.stored == 10
        failing_batch = next(batch for batch in storage.batches if failing in batch)
        assert storage.tries(failing_batch) == failures + 1
        # nothing after the failing batch was stored before it: the calls that stored a batch
        # come in put order, whatever failed in between
        assert [batch for batch, ok in storage.calls if ok] == storage.batches
        assert [meter for batch, _ in output.published for meter in batch] == put[0::2]
        assert output.unstored == []
    assert not storage.overlapped
    assert len(storage.threads) == 1


async def test_a_storage_outage_holds_the_batches_until_it_ends(
    executor: RecordingExecutor,
) -> None:
    outage = threading.Event()
    outage.set()
    storage = FakeStorage(fail=lambda batch, tries: outage.is_set())
    writer = make_writer(storage, executor, batch_size=2, retry_delay=0.01)
    async with running(writer):
        for index in range(6):
            writer.put(result(index))
        waiter = asyncio.ensure_future(writer.drain())
        await until(lambda: len(storage.calls) >= 8)  # the first batch, tried again and again
        assert not waiter.done()
        assert storage.batches == []
        assert writer.stored == 0
        outage.clear()
        await asyncio.wait_for(waiter, PATIENCE)
        assert storage.batches == [["m0", "m1"], ["m2", "m3"], ["m4", "m5"]]
        assert writer.stored == 6


# -- outputs ---------------------------------------------------------------------------------


async def test_outputs_get_every_stored_batch_after_it_is_stored_split(
    executor: RecordingExecutor,
) -> None:
    storage = FakeStorage()
    output = RecordingOutput(storage)
    other = RecordingOutput(storage)
    writer = make_writer(storage, executor, [output, other], batch_size=3)
    records: list[ReadingRecord | FailureRecord] = [
        reading("a", 0),
        failure("b", 0),
        reading("c", 0),
        failure("d", 0),
        failure("e", 0),
        reading("f", 0),
        reading("g", 0),
    ]
    expected = [(["a", "c"], ["b"]), (["f"], ["d", "e"]), (["g"], [])]
    async with running(writer):
        for record in records:
            writer.put(record)
        await drain(writer)
        assert output.published == expected  # published before drain returned
        assert other.published == expected
    assert output.unstored == []  # each publish came after its batch was stored
    assert sorted(output.records, key=records.index) == records  # the records themselves
    assert storage.outbox == [(), (), ()]


@pytest.mark.parametrize("outbox", [False, True])
async def test_the_outbox_is_used_when_an_output_asks_for_it(
    executor: RecordingExecutor, outbox: bool
) -> None:
    storage = FakeStorage()
    outputs = [RecordingOutput(storage), RecordingOutput(storage, outbox=outbox)]
    writer = make_writer(storage, executor, outputs, batch_size=2)
    async with running(writer):
        for index in range(3):
            writer.put(result(index))
        await drain(writer)
    # the queue of the output that drains one, named after it; none without such an output
    queues = ("recording",) if outbox else ()
    assert storage.outbox == [queues, queues]


async def test_an_output_that_raises_does_not_stop_the_writer(
    executor: RecordingExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    storage = FakeStorage()
    broken = BrokenOutput(RuntimeError("publish bug"))
    output = RecordingOutput(storage)
    writer = make_writer(storage, executor, [broken, output], batch_size=2)
    async with running(writer):
        for index in range(5):
            writer.put(result(index))
            if index == 1:
                await asyncio.wait_for(output.event.wait(), PATIENCE)  # after the first raise
                assert broken.calls == 1
        await drain(writer)
        assert storage.batches == [["m0", "m1"], ["m2", "m3"], ["m4"]]
        assert output.published == [(["m0"], ["m1"]), (["m2"], ["m3"]), (["m4"], [])]
        assert broken.calls == 3
        assert writer.stored == 5
    failed = [r for r in caplog.records if "output broken failed to publish" in r.getMessage()]
    assert len(failed) == 3


# -- close and drain -----------------------------------------------------------------------


async def test_close_gives_up_on_a_storage_that_always_fails(
    executor: RecordingExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    storage = FakeStorage(fail=lambda batch, tries: "m2" in batch)
    output = RecordingOutput(storage)
    writer = make_writer(storage, executor, [output], batch_size=2, retry_delay=0.01)
    writer.start()
    for index in range(5):  # [m0, m1] is stored, [m2, m3] never, [m4] after it
        writer.put(result(index))
    await asyncio.wait_for(writer.close(), PATIENCE)
    assert storage.batches == [["m0", "m1"], ["m4"]]
    assert storage.tries(["m2", "m3"]) == 4  # the try, then three more ("close" docstring)
    assert writer.stored == 3  # the given up ones not counted
    assert (writer.lost, writer.spilled) == (2, 0)  # no journal here: lost, and said so
    assert output.published == [(["m0"], ["m1"]), (["m4"], [])]
    gave_up = [r for r in caplog.records if "not stored" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in gave_up] == [
        (logging.ERROR, "2 results not stored after 4 tries: lost")
    ]


async def test_close_after_a_long_outage_gives_up_within_a_few_tries(
    executor: RecordingExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    storage = FakeStorage(fail=lambda batch, tries: True)
    writer = make_writer(storage, executor, batch_size=2, retry_delay=0.01)
    writer.start()
    for index in range(3):
        writer.put(result(index))
    await until(lambda: len(storage.calls) >= 10)  # not closing: the writer keeps trying
    await asyncio.wait_for(writer.close(), PATIENCE)
    tries = len(storage.calls)
    assert storage.batches == []
    assert writer.stored == 0
    assert storage.tries(["m2"]) <= 4  # the batch behind the failing one: bounded too
    assert tries <= 10 + 1 + 1 + 4  # in flight, one more at close, the last batch's four
    gave_up = [r for r in caplog.records if "not stored after" in r.getMessage()]
    assert [r.levelno for r in gave_up] == [logging.ERROR, logging.ERROR]
    assert writer.lost == 3


async def test_drain_with_nothing_put_returns_at_once(executor: RecordingExecutor) -> None:
    storage = FakeStorage()
    writer = make_writer(storage, executor)
    await asyncio.wait_for(writer.drain(), 1.0)  # not even started
    async with running(writer):
        start = time.monotonic()
        await asyncio.wait_for(writer.drain(), 1.0)
        assert time.monotonic() - start < 0.5
    assert executor.jobs == []
    assert writer.stored == 0


async def test_drain_of_a_writer_not_started_raises(executor: RecordingExecutor) -> None:
    storage = FakeStorage()
    writer = make_writer(storage, executor)
    writer.put(result(0))
    with pytest.raises(RuntimeError, match="not started"):
        await asyncio.wait_for(writer.drain(), PATIENCE)


async def test_stored_counts_the_results_stored_after_each_drain(
    executor: RecordingExecutor,
) -> None:
    storage = FakeStorage()
    writer = make_writer(storage, executor, batch_size=3)
    async with running(writer):
        for index in range(7):
            writer.put(result(index))
        await drain(writer)
        assert writer.stored == 7 == len(storage.stored_meters)
        for index in range(7, 9):
            writer.put(result(index))
        await drain(writer)
        assert writer.stored == 9 == len(storage.stored_meters)
        await drain(writer)
        assert writer.stored == 9
    assert writer.stored == 9


@pytest.mark.parametrize("when", ["before", "before-with-more-put", "while-drain-waits"])
async def test_drain_raises_when_the_writer_task_died(
    executor: RecordingExecutor, when: str
) -> None:
    storage = FakeStorage()
    output = RecordingOutput(storage)
    fatal = BrokenOutput(Fatal("the writer's task dies of this"))
    writer = make_writer(storage, executor, [output, fatal], batch_size=2)
    writer.start()
    writer.put(result(0))
    writer.put(result(1))  # a full batch: stored, then published, and the task dies
    if when.startswith("before"):
        await asyncio.wait_for(output.event.wait(), PATIENCE)
        await asyncio.sleep(0)  # fatal.publish, right after
        assert fatal.calls == 1
    if when == "before-with-more-put":
        writer.put(result(2))
    with pytest.raises(Fatal):
        await asyncio.wait_for(writer.drain(), PATIENCE)
    assert fatal.calls == 1
    assert storage.batches == [["m0", "m1"]]


async def test_a_batch_put_while_an_earlier_one_is_tried_again_waits_for_it(
    executor: RecordingExecutor,
) -> None:
    # [m0, m1] fails once; [m2, m3], not tried behind it, then fails its own first try; a batch
    # put while that one waits to be tried again must not be stored before it
    def fail(batch: list[str], tries: int) -> bool:
        return batch in (["m0", "m1"], ["m2", "m3"]) and tries == 0

    storage = FakeStorage(fail=fail)
    writer = make_writer(storage, executor, batch_size=2, retry_delay=0.2)
    async with running(writer):
        for index in range(4):
            writer.put(result(index))
        await until(lambda: (["m2", "m3"], False) in storage.calls)
        writer.put(result(4))
        writer.put(result(5))
        await drain(writer)
        assert storage.batches == [["m0", "m1"], ["m2", "m3"], ["m4", "m5"]]
        assert storage.tries(["m4", "m5"]) == 1
        assert writer.stored == 6


async def test_once_a_failed_batch_is_stored_the_next_one_is_tried_as_it_is_sent(
    executor: RecordingExecutor,
) -> None:
    """A failure holds back only the batches sent while it is being dealt with."""
    storage = FakeStorage(fail=lambda batch, tries: batch == ["m0", "m1"] and tries == 0)
    writer = make_writer(storage, executor, batch_size=2, retry_delay=0.01)
    async with running(writer):
        writer.put(result(0))
        writer.put(result(1))
        await drain(writer)
        jobs = len(executor.jobs)
        writer.put(result(2))
        writer.put(result(3))
        await drain(writer)
        # stored by the storage thread's job sent from put, not held back and tried again
        assert len(executor.jobs) == jobs + 1
        assert storage.calls == [(["m0", "m1"], False), (["m0", "m1"], True), (["m2", "m3"], True)]


async def test_results_put_while_drain_waits_are_stored_before_it_returns(
    executor: RecordingExecutor,
) -> None:
    gate = threading.Event()  # holds the storage thread in the first batch
    storage = FakeStorage(gate=gate)
    writer = make_writer(storage, executor, batch_size=2, flush_interval=0.05)
    try:
        async with running(writer):
            writer.put(result(0))
            waiter = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(0)  # drain sends [m0] and waits
            assert len(executor.jobs) == 1
            # while drain() waits, what is put goes to the storage thread at once
            writer.put(result(1))
            assert len(executor.jobs) == 2
            writer.put(result(2))
            writer.put(result(3))
            assert len(executor.jobs) == 4
            await asyncio.sleep(0.1)
            assert not waiter.done()
            gate.set()
            await asyncio.wait_for(waiter, PATIENCE)
            assert storage.batches == [["m0"], ["m1"], ["m2"], ["m3"]]
            assert writer.stored == 4
    finally:
        gate.set()


class HeldOutput(Output):
    """An output whose publish waits until the test lets it go."""

    name = "held"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.published = 0

    async def publish(
        self, readings: Sequence[ReadingRecord], failures: Sequence[FailureRecord]
    ) -> None:
        self.started.set()
        await self.release.wait()
        self.published += len(readings) + len(failures)


async def test_a_drain_called_while_the_last_batch_is_published_waits_for_the_outputs(
    executor: RecordingExecutor,
) -> None:
    storage = FakeStorage()
    output = HeldOutput()
    writer = make_writer(storage, executor, [output])
    async with running(writer):
        writer.put(result(0))
        writer.put(result(1))  # a full batch: stored, then published (held)
        await asyncio.wait_for(output.started.wait(), PATIENCE)
        assert sorted(storage.stored_meters) == ["m0", "m1"]
        late = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        assert not late.done()  # stored, not yet published
        output.release.set()
        await asyncio.wait_for(late, PATIENCE)
        assert output.published == 2
