"""``k382 read PORT``: read a meter and print its registers.

PORT is a serial device (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``), ``socket://HOST:PORT``
(a TCP gateway) or ``rfc2217://HOST:PORT``. Output: a table (default), ``--json`` (the shape of
``k382 decode --json`` plus ``port``, ``line``, ``timing`` and ``attempts``, and in ``bcc`` what
both algorithms computed, which matched and how sure that is; one object per line with
``--watch``) or ``--csv`` (a header, then one row per readout). ``--watch SECONDS``
reads again every SECONDS (start to start) until interrupted or ``--count`` readouts.

With ``--bcc auto`` (the default) the output says which block check algorithm matched and how
sure that is: only the 7-bit sum (the Kamstrup 382's own), only the XOR (a standard IEC meter,
or a damaged telegram that matches by chance, 1 in 128: unconfirmed until a second readout
agrees, see ``--watch``), or both (undecided). Every telegram is also held to what the meter
guarantees (widths, energy = tariff 1 + tariff 2, peaks within its maximum power) and, with
``--watch``, each reading to the last one (counters that never go down nor rise faster than
the meter's power allows, the same customer number): one that breaks it is an
``implausible`` error, retried like a BCC error.

While a readout runs, a progress bar (bytes received against the expected reply size) is drawn
on standard error if it is a terminal.

``--protocol`` (default ``iec``): ``kmp`` reads a KMP meter (382J, Jx3, Lx7, M) at ``--baud``
(:mod:`kamstrup382.cli.read_kmp`); ``auto`` tries mode A at 300 7E1, then KMP at 9600 and
1200, says on standard error what it found (and how long each try took), and reads with it.

Exit status: 0 every readout succeeded; 1 a readout failed (one line on standard error,
``error: <kind>: <message>``); 2 the command line is wrong.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import click

from kamstrup382.cli.options import seconds
from kamstrup382.cli.read_kmp import parse_registers, read_kmp
from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.protocol import BccMode, Observation, check_history
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY, MIN_MAX_REPLY
from kamstrup382.reader import Reader
from kamstrup382.reader.detect import detect
from kamstrup382.reader.options import MAX_MAX_REPLY
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.reading import Reading
from kamstrup382.render import (
    CSV_FIELDS,
    bcc_note,
    dumps,
    reading_csv_row,
    reading_json,
    registers_table,
)

__all__ = ["ProgressBar", "read", "render_reading"]

BAR_WIDTH = 30


class ProgressBar:
    """``[#####.....]  80/167 bytes`` redrawn in place on a terminal; cleared when done."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self._drawn = False

    def __call__(self, received: int, expected: int) -> None:
        total = max(expected, received, 1)
        filled = BAR_WIDTH * received // total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {received:>4}/{total} bytes")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False


def _csv_line(row: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def render_reading(reading: Reading) -> str:
    """The table output: where and how it was read, the identification, the registers."""
    ident = reading.identification
    tn = ident.type_number
    ident_line = f"identification  {ident}"
    if tn is not None:
        ident_line += (
            f"  ({tn.phases} phases, current code {tn.current_code}, "
            f"class {tn.accuracy_class}, module {tn.module}, label {tn.label})"
        )
    else:  # no type number: the model its identification names
        ident_line += f"  ({reading.telegram.dialect.label})"
    attempts = f"{reading.attempts} attempt{'s' if reading.attempts != 1 else ''}"
    lines = [
        f"port            {reading.port} ({reading.line.value})",
        ident_line,
        f"bcc             {reading.bcc_algorithm.value} 0x{reading.telegram.bcc:02x} valid"
        + (f"; {note}" if (note := bcc_note(reading)) else ""),
        f"read at         {reading.requested_at.isoformat(timespec='seconds')}",
        f"timing          answer after {reading.answer_delay:.3f} s, "
        f"done after {reading.duration:.3f} s, {attempts}",
        "",
        registers_table(reading.telegram).rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def _choose_protocol(  # noqa: PLR0917 - the options it chooses from
    port: str, protocol: str, baud: int, stop_bits: int, kmp_registers: str | None, margin: float
) -> tuple[str, int, int, Reading | None]:
    """The protocol to read with, its baud rate and stop bits, and a mode A reading ``auto``
    already got."""
    if protocol == "kmp":
        return "kmp", baud, stop_bits, None
    if kmp_registers is not None and protocol == "iec":
        raise click.UsageError("--registers is for --protocol kmp or auto")
    if protocol == "iec":
        return "iec", 300, 1, None
    try:
        detection = detect(port, answer_margin=margin)
    except Kamstrup382Error as exc:
        click.echo(f"error: {exc.kind}: {exc}", err=True)
        raise click.exceptions.Exit(1) from exc
    click.echo(f"auto: {detection.summary}", err=True)
    if detection.protocol is None or detection.baud is None:
        raise click.exceptions.Exit(1)
    return detection.protocol, detection.baud, detection.stop_bits, detection.reading


class _History:
    """With ``--watch``: each reading held to the last one returned (counters that only grow
    at the rate the meter's power allows, the same customer number, ...), inside the
    reader's retries, as the collector does."""

    def __init__(self) -> None:
        self.last: Observation | None = None

    @staticmethod
    def observe(reading: Reading) -> Observation:
        phases = reading.telegram.dialect.phases_of(reading.identification)
        return Observation(reading.meter_values(), reading.done_at, phases)

    def check(self, reading: Reading) -> None:
        if self.last is not None:
            check_history(self.last, self.observe(reading), reading.telegram.dialect)

    def add(self, reading: Reading) -> None:
        self.last = self.observe(reading)


@click.command("read")
@click.argument("port")
@click.option(
    "--protocol",
    type=click.Choice(["iec", "kmp", "auto"], case_sensitive=False),
    default="iec",
    show_default=True,
    help="iec: IEC 61107 mode A, 300 7E1 (685-382, 382C); kmp: KMP at --baud (382J, Jx3, Lx7, "
    "M; MULTICAL at 1200); auto: mode A, then KMP at 9600 and 1200, and says what it found.",
)
@click.option(
    "--baud",
    type=click.Choice(["1200", "2400", "4800", "9600", "19200"]),
    default="9600",
    show_default=True,
    help="KMP: the line's baud rate (8N1).",
)
@click.option(
    "--stop-bits",
    type=click.Choice(["1", "2"]),
    default="1",
    show_default=True,
    help="KMP: 1 (8N1, the 382 family) or 2 (8N2, MULTICAL and some heads).",
)
@click.option(
    "--registers",
    "kmp_registers",
    metavar="NAME|ID,...",
    help="KMP: the registers to read (names of the 382 table or ids such as 0x041E); "
    "default: the 382 set, in requests of at most 8.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per readout).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: a header, one row per readout.")
@click.option(
    "--watch",
    type=seconds(),
    metavar="SECONDS",
    help="Read again every SECONDS until interrupted.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    help="With --watch: stop after this many readouts.",
)
@click.option(
    "--line",
    type=click.Choice([m.value for m in LineMode], case_sensitive=False),
    metavar="7E1|8N1|auto",
    help="7E1: the port does parity; 8N1: the reader does; auto (socket:// only): the reply "
    "tells. Default: auto for socket://, 7E1 otherwise.",
)
@click.option(
    "--bcc",
    type=click.Choice([m.value for m in BccMode]),
    default=BccMode.AUTO.value,
    show_default=True,
    help="Block check: auto learns the meter's (Kamstrup sum or IEC XOR).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0, max=20),
    default=2,
    show_default=True,
    help="Extra attempts after a failed one.",
)
@click.option(
    "--timeout",
    "margin",
    type=seconds(allow_zero=True),
    default=0.3,
    show_default=True,
    metavar="SECONDS",
    help="Margin added to every timeout (answer window 0.6 s, inter-character) for gateways.",
)
@click.option(
    "--deadline",
    type=seconds(),
    metavar="SECONDS",
    help="Longest time one attempt may take (default: from the expected reply size).",
)
@click.option(
    "--max-reply",
    type=click.IntRange(min=MIN_MAX_REPLY, max=MAX_MAX_REPLY),
    default=DEFAULT_MAX_REPLY,
    show_default=True,
    metavar="BYTES",
    help="Largest reply accepted, from '/' to the BCC (a 382's is 167); a longer one is a "
    "framing error.",
)
def read(
    *,
    port: str,
    protocol: str,
    baud: str,
    stop_bits: str,
    kmp_registers: str | None,
    as_json: bool,
    as_csv: bool,
    watch: float | None,
    count: int | None,
    line: str | None,
    bcc: str,
    retries: int,
    margin: float,
    deadline: float | None,
    max_reply: int,
) -> None:
    """Read the meter on PORT (device path, socket://HOST:PORT or rfc2217://HOST:PORT)."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    if count is not None and watch is None:
        raise click.UsageError("--count needs --watch")
    chosen, found, found_stop_bits, first = _choose_protocol(
        port, protocol.lower(), int(baud), int(stop_bits), kmp_registers, margin
    )
    if chosen == "kmp":
        try:
            registers = parse_registers(kmp_registers)
        except UsageError as exc:
            click.echo(f"error: {exc.kind}: {exc}", err=True)
            raise click.exceptions.Exit(2) from exc
        read_kmp(
            port,
            baud=found,
            stop_bits=found_stop_bits,
            registers=registers,
            as_json=as_json,
            as_csv=as_csv,
            watch=watch,
            count=count,
            retries=retries,
            margin=margin,
        )
        return
    try:
        reader = Reader(
            port,
            line=line.upper() if line else None,
            bcc=bcc,
            retries=retries,
            answer_margin=margin,
            deadline=deadline,
            max_reply=max_reply,
        )
    except UsageError as exc:
        click.echo(f"error: {exc.kind}: {exc}", err=True)
        raise click.exceptions.Exit(2) from exc

    bar = ProgressBar(sys.stderr, "reading") if sys.stderr.isatty() else None
    if as_csv:
        click.echo(_csv_line(CSV_FIELDS), nl=False)
    failed = 0
    done = 0
    history = _History()
    try:
        with reader:
            while True:
                started = time.monotonic()
                try:
                    reading = (
                        first
                        if first is not None
                        else reader.read(progress=bar, accept=history.check)
                    )
                    first = None
                    history.add(reading)
                except Kamstrup382Error as exc:
                    failed += 1
                    if bar is not None:
                        bar.clear()
                    click.echo(f"error: {exc.kind}: {exc}", err=True)
                else:
                    if bar is not None:
                        bar.clear()
                    if as_csv:
                        text = _csv_line(reading_csv_row(reading))
                    elif as_json:
                        indent = None if watch is not None else 2
                        text = dumps(reading_json(reading), indent=indent) + "\n"
                    else:
                        text = render_reading(reading)
                    click.echo(text, nl=False)
                done += 1
                if watch is None or (count is not None and done >= count):
                    break
                if not as_json and not as_csv:
                    click.echo()
                time.sleep(max(0.0, started + watch - time.monotonic()))
    except KeyboardInterrupt:
        if bar is not None:
            bar.clear()
    if failed:
        sys.stdout.flush()
        raise click.exceptions.Exit(1)
