"""Benchmark: readings stored per second in SQLite and PostgreSQL, in batches.

    python bench/bench_storage.py                       # both backends, batches of 1,000 and 10,000
    python bench/bench_storage.py --rows 500000 --batch 1000 --backend sqlite
    python bench/bench_storage.py --postgres-url postgresql://user@host/db   # an existing server

Each run writes ``--rows`` readings (``--meters`` meters, one reading per meter and slot, the
registers growing from slot to slot, the raw telegram of the specification's example) into a
fresh database through ``Storage.record`` (one transaction per batch, as the collector's batch
writer does), with the backends' durable defaults: SQLite in WAL mode with ``synchronous=FULL``
(and, for comparison, ``?synchronous=normal``), PostgreSQL with ``fsync`` on. Only the time
spent in ``record`` counts (the records are built before each batch, outside the clock). Then
every reading is streamed back with ``Storage.readings()`` and the consumption derived with
``Storage.consumption()``, to show the read side.

Without ``--postgres-url`` a temporary PostgreSQL server is started in a temporary directory
(Debian's ``initdb``/``pg_ctl``, see ``tests/fixtures/postgres.py``) and removed afterwards.

Target (issue 5): 50,000 readings a second batched on SQLite; the ratio printed is the
measured rate over that target (1.00 or more: met).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.fixtures.postgres

from kamstrup382.protocol import MeterValues
from kamstrup382.storage import ReadingRecord
from kamstrup382.storage.url import open_storage

TARGET_SQLITE = 50_000.0
START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
RAW = resources.files("kamstrup382").joinpath("data/spec-example.bin").read_bytes()


@dataclass(frozen=True)
class Result:
    backend: str
    batch: int
    rows: int
    write_s: list[float]
    read_s: float
    consumption_s: float

    @property
    def write_rate(self) -> float:
        return self.rows / statistics.median(self.write_s)

    @property
    def read_rate(self) -> float:
        return self.rows / self.read_s

    @property
    def consumption_rate(self) -> float:
        return self.rows / self.consumption_s


def batches(rows: int, meters: int, batch: int) -> Iterator[list[ReadingRecord]]:
    """``rows`` readings, slot after slot (every meter in each), ``batch`` at a time."""
    current: list[ReadingRecord] = []
    for index in range(rows):
        slot_index, meter = divmod(index, meters)
        slot = START + slot_index * STEP
        t1 = (1000 * meter + 3 * slot_index) % 10**7
        t2 = (500 * meter + slot_index) % 10**7
        values = MeterValues(
            customer_number=f"{meter:08d}",
            energy=Decimal((t1 + t2) % 10**7),
            tariff_1=Decimal(t1),
            tariff_2=Decimal(t2),
            hour_counter=Decimal(slot_index // 4),
            pulse_input=Decimal(0),
            actual_peak=Decimal(meter % 1000).scaleb(-1),
            last_month_peak=Decimal("18.3"),
        )
        current.append(
            ReadingRecord(
                meter=f"m{meter:05d}",
                slot=slot,
                read_at=slot + timedelta(seconds=5.77, microseconds=meter),
                values=values,
                identification="KAM 685-382-OK-15",
                type_number="685-382-OK-15",
                bcc_algorithm="sum7",
                raw=RAW,
                answer_delay=0.02,
                duration=5.77,
                attempts=1,
            )
        )
        if len(current) == batch:
            yield current
            current = []
    if current:
        yield current


def measure(url: str, rows: int, meters: int, batch: int) -> tuple[float, float, float]:
    """Seconds spent writing ``rows`` readings into the empty storage at ``url``, reading them
    back, and deriving their consumption."""
    with open_storage(url) as storage:
        spent = 0.0
        for chunk in batches(rows, meters, batch):
            started = time.perf_counter()
            new = storage.record(chunk)
            spent += time.perf_counter() - started
            if new != len(chunk):
                raise SystemExit(f"{url}: {new} of {len(chunk)} readings stored")
        started = time.perf_counter()
        count = sum(1 for _ in storage.readings())
        read = time.perf_counter() - started
        started = time.perf_counter()
        pairs = sum(1 for _ in storage.consumption())
        derived = time.perf_counter() - started
    if count != rows or pairs != rows - min(meters, rows):
        raise SystemExit(f"{url}: read back {count} readings and {pairs} intervals")
    return spent, read, derived


@contextlib.contextmanager
def postgres(url: str | None, wanted: bool) -> Iterator[tuple[object | None, str | None]]:
    """An existing server's URL, or a temporary server (``None`` when unwanted or impossible)."""
    if not wanted:
        yield None, None
        return
    if url is not None:
        yield None, url
        return
    from tests.fixtures.postgres import PostgresServer, find_pg_bin

    if find_pg_bin() is None:
        print("PostgreSQL binaries not found: skipping PostgreSQL", file=sys.stderr)
        yield None, None
        return
    with PostgresServer(fsync=True) as server:
        yield server, server.url


def fresh_postgres(server: object | None, url: str, index: int) -> str:
    """A new empty database on the temporary server, or the given database emptied."""
    if server is not None:
        return server.create_database(f"bench_{index}")  # type: ignore[attr-defined,no-any-return]
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS outbox_claims, outbox, readings, failures, leases, schema_version"
        )
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=200_000, help="readings per run")
    parser.add_argument("--meters", type=int, default=1000, help="meters (readings per slot)")
    parser.add_argument(
        "--batch", type=int, action="append", help="readings per transaction (repeatable)"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=["sqlite", "sqlite-normal", "postgres"],
        help="backends to measure (repeatable; default all)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median counts")
    parser.add_argument(
        "--postgres-url",
        help="use this (scratch!) database instead of a temporary server; its tables are dropped",
    )
    args = parser.parse_args()
    sizes = args.batch or [1000, 10_000]
    backends = args.backend or ["sqlite", "sqlite-normal", "postgres"]

    print(f"{args.rows} readings per run, {args.meters} meters, median of {args.repeat} runs")
    print(
        f"{'backend':<14} {'batch':>6} {'write/s':>10} {'read/s':>10} {'consumption/s':>14} "
        f"{'vs 50k/s':>9}"
    )
    results: list[Result] = []
    counter = 0
    with (
        tempfile.TemporaryDirectory(prefix="k382-bench-storage-") as folder,
        postgres(args.postgres_url, "postgres" in backends) as (server, pg_url),
    ):
        for backend in backends:
            for size in sizes:
                writes: list[float] = []
                read = derived = 0.0
                for _ in range(args.repeat):
                    counter += 1
                    if backend == "postgres":
                        if pg_url is None:
                            break
                        url = fresh_postgres(server, pg_url, counter)
                    else:
                        query = "?synchronous=normal" if backend == "sqlite-normal" else ""
                        url = f"sqlite:///{Path(folder) / f'bench-{counter}.sqlite'}{query}"
                    spent, read, derived = measure(url, args.rows, args.meters, size)
                    writes.append(spent)
                if not writes:
                    continue
                result = Result(backend, size, args.rows, writes, read, derived)
                results.append(result)
                print(
                    f"{backend:<14} {size:>6} {result.write_rate:>10,.0f} "
                    f"{result.read_rate:>10,.0f} {result.consumption_rate:>14,.0f} "
                    f"{result.write_rate / TARGET_SQLITE:>9.2f}",
                    flush=True,
                )
    batched = [r for r in results if r.backend == "sqlite" and r.batch >= 1000]
    if batched:
        best = max(batched, key=lambda r: r.write_rate)
        verdict = "met" if best.write_rate >= TARGET_SQLITE else "NOT met"
        print(
            f"target: 50,000 readings/s batched on SQLite (synchronous=FULL): "
            f"{best.write_rate:,.0f}/s at batch {best.batch} "
            f"(ratio {best.write_rate / TARGET_SQLITE:.2f}) -> {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
