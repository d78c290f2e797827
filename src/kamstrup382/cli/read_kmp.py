"""``k382 read PORT --protocol kmp`` (and what ``auto`` found to be KMP): KMP readouts.

Output: a table (default), ``--json`` (the one shape of a reading, ``docs/formats.md``, with
``protocol`` ``kmp``: the registers keyed by name with their id as ``code``, ``baud``,
``stop_bits``, the ``missing`` ids; one object per line with ``--watch``) or ``--csv`` (a
header of the register names, one row per readout).
"""

from __future__ import annotations

import csv
import io
import sys
import time

import click

from kamstrup382.documents import kmp_reading_document
from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.protocol.kmp import KMP_REGISTER_BY_NAME, register_name
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.reader.kmp_sync import DEFAULT_REGISTERS, KmpReader
from kamstrup382.render import dumps, format_value

__all__ = ["parse_registers", "read_kmp", "render_kmp_reading"]


def parse_registers(text: str | None) -> tuple[int, ...]:
    """``energy,power,0x041E`` as register ids (names of the 382 table or hex/decimal ids)."""
    if text is None:
        return DEFAULT_REGISTERS
    ids: list[int] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        register = KMP_REGISTER_BY_NAME.get(item)
        if register is not None:
            ids.append(register.id)
            continue
        try:
            value = int(item, 0)
        except ValueError:
            raise UsageError(
                f"--registers: {item!r} is neither a register name "
                f"({', '.join(KMP_REGISTER_BY_NAME)}) nor an id"
            ) from None
        if not 0 <= value <= 0xFFFF:
            raise UsageError(f"--registers: id {item} is not 16 bits")
        ids.append(value)
    if not ids:
        raise UsageError("--registers: no register given")
    return tuple(ids)


def render_kmp_reading(reading: KmpReading) -> str:
    rows = [("id", "name", "value", "unit")]
    rows.extend(
        (f"0x{r.id:04x}", r.name or "-", format_value(r.value), r.unit) for r in reading.registers
    )
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    table = [
        f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}".rstrip() for a, b, c, d in rows
    ]
    attempts = f"{reading.attempts} attempt{'s' if reading.attempts != 1 else ''}"
    lines = [
        f"port            {reading.port} (KMP, {reading.baud} baud 8N{reading.stop_bits})",
        f"read at         {reading.requested_at.isoformat(timespec='seconds')}",
        f"timing          done after {reading.duration:.3f} s, {reading.exchanges} "
        f"exchanges, {attempts}",
    ]
    if reading.missing:
        lines.append("not answered    " + ", ".join(f"0x{i:04x}" for i in reading.missing))
    return "\n".join([*lines, "", *table]) + "\n"


def _csv_line(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def read_kmp(
    port: str,
    *,
    baud: int,
    stop_bits: int = 1,
    registers: tuple[int, ...],
    as_json: bool,
    as_csv: bool,
    watch: float | None,
    count: int | None,
    retries: int,
    margin: float,
) -> None:
    try:
        reader = KmpReader(
            port,
            baud=baud,
            registers=registers,
            retries=retries,
            answer_margin=margin,
            stop_bits=stop_bits,
        )
    except UsageError as exc:
        click.echo(f"error: {exc.kind}: {exc}", err=True)
        raise click.exceptions.Exit(2) from exc
    if as_csv:
        names = [register_name(i) or f"0x{i:04x}" for i in registers]
        click.echo(_csv_line(["requested_at", "port", *names]), nl=False)
    failed = done = 0
    try:
        with reader:
            while True:
                started = time.monotonic()
                try:
                    reading = reader.read()
                except Kamstrup382Error as exc:
                    failed += 1
                    click.echo(f"error: {exc.kind}: {exc}", err=True)
                else:
                    click.echo(
                        _render(
                            reading,
                            registers,
                            as_json=as_json,
                            as_csv=as_csv,
                            watch=watch is not None,
                        ),
                        nl=False,
                    )
                done += 1
                if watch is None or (count is not None and done >= count):
                    break
                if not as_json and not as_csv:
                    click.echo()
                time.sleep(max(0.0, started + watch - time.monotonic()))
    except KeyboardInterrupt:
        pass
    if failed:
        sys.stdout.flush()
        raise click.exceptions.Exit(1)


def _render(
    reading: KmpReading, registers: tuple[int, ...], *, as_json: bool, as_csv: bool, watch: bool
) -> str:
    if as_csv:
        by_id = {r.id: format_value(r.value) for r in reading.registers}
        stamp = reading.requested_at.isoformat(timespec="milliseconds")
        return _csv_line([stamp, reading.port, *(by_id.get(i, "") for i in registers)])
    if as_json:
        return dumps(kmp_reading_document(reading), indent=None if watch else 2) + "\n"
    return render_kmp_reading(reading)
