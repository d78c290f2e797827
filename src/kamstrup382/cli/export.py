"""``k382 export``: stored readings or per-interval consumption as CSV or JSON, streamed.

Rows are written as the storage yields them (constant memory for millions of rows). JSON is a
streamed array (``--format json``) or one object per line (``--format jsonl``); each reading is
the one shape of a reading (:mod:`kamstrup382.documents`, ``docs/formats.md``), of either
protocol (``"protocol": "kmp"`` for a KMP meter's). CSV has one column per field (the
registers by name, ``customer_number`` with its leading zeros), one table for both protocols:
the mode A fields, then ``protocol`` (``iec`` or ``kmp``) and the KMP fields (its registers
that mode A has not, its identity, its exchanges); ``energy`` (kWh), ``duration`` and
``attempts`` are shared, every other field of the other protocol is empty, and so is a
register the meter did not send. Consumption of a KMP meter comes from its ``energy``
register, its tariff columns empty (the 382's KMP register set has no tariffs).
``--since``/``--until`` take ISO 8601 times (a time without zone is UTC; a bare date is its
midnight UTC) and select ``[since, until)``. A file given with ``--output`` appears only when
complete. Exit status: 0 done, 1 the storage failed, 2 a bad option or configuration.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import click

from kamstrup382.cli.database import open_chosen
from kamstrup382.documents import any_record_document, dumps
from kamstrup382.errors import ConfigError, Kamstrup382Error, UsageError
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.protocol.registers import REGISTERS
from kamstrup382.storage.base import Storage
from kamstrup382.storage.records import AnyReading, ConsumptionRow, KmpReadingRecord

__all__ = [
    "CONSUMPTION_FIELDS",
    "READING_FIELDS",
    "config_options",
    "consumption_fields",
    "export",
    "open_configured_storage",
    "parse_time",
    "reading_fields",
]

#: The exit status of a filter that SIGPIPE ended (128 + 13): what ``| head`` leaves behind.
SIGPIPE_STATUS = 141

REGISTER_NAMES = tuple(r.name for r in REGISTERS)
#: The KMP registers with a column of their own (``energy`` is the mode A column, in kWh too).
KMP_REGISTER_NAMES = tuple(r.name for r in KMP_382_REGISTERS if r.name not in REGISTER_NAMES)
_KMP_FIELDS = ("meter_type", "software_revision", "serial", "exchanges")
READING_FIELDS = (
    "meter",
    "slot",
    "read_at",
    *REGISTER_NAMES,
    "identification",
    "type_number",
    "bcc_algorithm",
    "answer_delay",
    "duration",
    "attempts",
    "protocol",
    *KMP_REGISTER_NAMES,
    *_KMP_FIELDS,
)
CONSUMPTION_FIELDS = ("meter", "start", "end", "energy", "tariff_1", "tariff_2")

Value = str | Decimal | int | float | None


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def reading_fields(r: AnyReading, *, raw: bool = False) -> list[tuple[str, Value]]:
    """A reading of either protocol as (field, value) pairs in :data:`READING_FIELDS` order
    (+ ``raw`` as hex, empty for a KMP reading)."""
    if isinstance(r, KmpReadingRecord):
        return _kmp_fields(r, raw=raw)
    fields: list[tuple[str, Value]] = [
        ("meter", r.meter),
        ("slot", _utc(r.slot)),
        ("read_at", _utc(r.read_at)),
        *((name, getattr(r.values, name)) for name in REGISTER_NAMES),
        ("identification", r.identification),
        ("type_number", r.type_number),
        ("bcc_algorithm", str(r.bcc_algorithm)),
        ("answer_delay", round(r.answer_delay, 3)),  # to the millisecond
        ("duration", round(r.duration, 3)),
        ("attempts", r.attempts),
        ("protocol", r.protocol),
        *((name, None) for name in (*KMP_REGISTER_NAMES, *_KMP_FIELDS)),
    ]
    if raw:
        fields.append(("raw", r.raw.hex()))
    return fields


def _kmp_fields(r: KmpReadingRecord, *, raw: bool) -> list[tuple[str, Value]]:
    fields: list[tuple[str, Value]] = [
        ("meter", r.meter),
        ("slot", _utc(r.slot)),
        ("read_at", _utc(r.read_at)),
        *((name, r.values.get(name)) for name in REGISTER_NAMES),
        *((name, None) for name in ("identification", "type_number", "bcc_algorithm")),
        ("answer_delay", None),
        ("duration", round(r.duration, 3)),
        ("attempts", r.attempts),
        ("protocol", r.protocol),
        *((name, r.values.get(name)) for name in KMP_REGISTER_NAMES),
        ("meter_type", f"0x{r.meter_type:04x}"),  # as in the JSON shape's meter_identity
        ("software_revision", r.software_revision),
        ("serial", r.serial),
        ("exchanges", r.exchanges),
    ]
    if raw:
        fields.append(("raw", None))
    return fields


def consumption_fields(c: ConsumptionRow) -> list[tuple[str, Value]]:
    return [
        ("meter", c.meter),
        ("start", _utc(c.start)),
        ("end", _utc(c.end)),
        ("energy", c.energy),
        ("tariff_1", c.tariff_1),
        ("tariff_2", c.tariff_2),
    ]


def _csv_value(value: Value) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    return "" if value is None else str(value)


def write_csv(rows: Iterable[list[tuple[str, Value]]], out: IO[str]) -> int:
    """Write ``rows`` to ``out`` as CSV with a header, one by one; return the count."""
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    for fields in rows:
        if count == 0:
            writer.writerow([k for k, _ in fields])
        writer.writerow([_csv_value(v) for _, v in fields])
        count += 1
    return count


def write_json(objects: Iterable[Mapping[str, Any]], out: IO[str], *, lines: bool) -> int:
    """Write ``objects`` to ``out`` as a JSON array or JSON Lines, one by one; return the count.

    ``Decimal`` values become JSON numbers with exactly their digits (:func:`dumps`).
    """
    count = 0
    if lines:
        for obj in objects:
            out.write(dumps(obj) + "\n")
            count += 1
        return count
    out.write("[")
    for obj in objects:
        out.write(("\n" if count == 0 else ",\n") + dumps(obj))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time (naive: UTC; a bare date: its midnight UTC)."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-03-01T12:00:00Z)", param_hint=option
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` and ``--storage URL``: where the storage is."""
    fn = click.option(
        "--storage", "storage_url", help="Storage URL (overrides the config's [storage] url)."
    )(fn)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="TOML config file; its [storage] url is used (default: see 'k382 config path').",
    )(fn)


def open_configured_storage(config_path: Path | None, storage_url: str | None) -> Storage:
    """The storage named by ``--storage``, else by the config file (given or found), else the
    default; a SQLite file that is not there is an error (see :mod:`.database`)."""
    return open_chosen(config_path, storage_url)


@contextlib.contextmanager
def _output(target: str) -> Iterator[IO[str]]:
    """stdout for ``-``; else a temporary file renamed to ``target`` once complete."""
    if target == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@click.command("export")
@config_options
@click.option(
    "--what",
    type=click.Choice(["readings", "consumption"]),
    default="readings",
    show_default=True,
    help="Readings, or consumption between consecutive readings (kWh, across wrap).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "jsonl"]),
    default="csv",
    show_default=True,
    help="CSV with a header, a JSON array, or JSON Lines.",
)
@click.option("--since", help="From this time on (ISO 8601; no zone: UTC).")
@click.option("--until", help="Before this time (ISO 8601; no zone: UTC).")
@click.option("--meter", help="Only this meter (default: all, meter by meter).")
@click.option("--raw", is_flag=True, help="Readings: add the raw telegram as hex.")
@click.option(
    "--output", "-o", default="-", show_default=True, help="File to write, or - for stdout."
)
def export(
    *,
    config_path: Path | None,
    storage_url: str | None,
    what: str,
    fmt: str,
    since: str | None,
    until: str | None,
    meter: str | None,
    raw: bool,
    output: str,
) -> int:
    """Export stored readings or per-interval consumption as CSV or JSON."""
    start = parse_time(since, "--since")
    end = parse_time(until, "--until")
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("must be after --since", param_hint="--until")
    try:
        with open_configured_storage(config_path, storage_url) as storage:
            if what == "readings":
                records = storage.readings(meter, start, end)
                rows = (reading_fields(r, raw=raw) for r in records)
                objects: Iterable[Mapping[str, Any]] = (
                    any_record_document(r, raw=raw) for r in records
                )
            else:
                consumption = storage.consumption(meter, start, end)
                rows = (consumption_fields(c) for c in consumption)
                objects = (dict(consumption_fields(c)) for c in consumption)
            with _output(output) as out:
                if fmt == "csv":
                    count = write_csv(rows, out)
                else:
                    count = write_json(objects, out, lines=fmt == "jsonl")
                if count == 0 and fmt == "csv":
                    fields = CONSUMPTION_FIELDS if what == "consumption" else READING_FIELDS
                    csv.writer(out, lineterminator="\n").writerow(
                        [*fields, "raw"] if raw and what == "readings" else fields
                    )
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        return 2
    except UsageError as exc:  # a missing extra, say: exit 2, as every usage error
        click.echo(f"error: {exc}", err=True)
        return 2
    except Kamstrup382Error as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except BrokenPipeError:
        if output != "-":
            raise
        # whoever reads stdout stopped (| head): end quietly, as a Unix filter does, with the
        # status of one that SIGPIPE ended; nothing more may reach the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_STATUS
    except OSError as exc:
        click.echo(f"error: cannot write {output}: {exc}", err=True)
        return 1
    if output != "-":
        click.echo(f"{count} {what} rows written to {output}", err=True)
    return 0
