"""``k382 emulate``: serve emulated Kamstrup 382 meters on TCP ports or pseudo-terminals.

Prints where each meter listens (one line per meter, or the range for many), then serves
until SIGINT or SIGTERM and exits 0. Exit status 2: a wrong option value. Runs on uvloop
where it is installed (many meters in one process), on asyncio's loop otherwise.

    k382 emulate                                  # one meter on 127.0.0.1, a free port
    k382 emulate --tcp 127.0.0.1:21000 --meters 100 --speed 1
    k382 emulate --pty --faults flip=0.1,late=0.05 --seed 7
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import click

from kamstrup382.errors import Kamstrup382Error, UsageError

if TYPE_CHECKING:
    from kamstrup382.emulator.server import Emulator

__all__ = ["emulate", "parse_delay", "parse_listen"]

#: With more meters than this, the addresses are printed as one range.
LIST_LIMIT = 10


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6HOST]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--tcp {text!r}: expected HOST:PORT, e.g. 127.0.0.1:21000") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--tcp {text!r}: port must be 0-65535")
    return host, port


def parse_delay(text: str) -> float | tuple[float, float]:
    """``0.05`` (seconds) or ``0.02-0.6`` (uniform in the range)."""
    lo_text, dash, hi_text = text.partition("-")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if dash else lo
    except ValueError:
        raise UsageError(f"--delay {text!r}: expected seconds or LO-HI, e.g. 0.02-0.6") from None
    return (lo, hi) if dash else lo


@click.command("emulate")
@click.option("--pty", "use_pty", is_flag=True, help="Serve on pseudo-terminals (prints paths).")
@click.option(
    "--tcp",
    "listen",
    metavar="HOST:PORT",
    default="127.0.0.1:0",
    show_default=True,
    help="Serve on TCP, one port per meter from PORT (0: free consecutive ports).",
)
@click.option(
    "--meters",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many meters (TCP: consecutive ports; pty: one each).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Line speed factor (1 = the true 300 baud, 30 characters a second).",
)
@click.option(
    "--delay",
    default="0.05",
    show_default=True,
    help="Answer delay in seconds, or a range LO-HI drawn per readout (spec: 0.02-0.6).",
)
@click.option(
    "--load",
    "load_text",
    default="household",
    show_default=True,
    help="KW, constant:KW, household (a profile per meter), household:seed=N,scale=X or "
    "csv:PATH (timestamp,kW rows).",
)
@click.option("--tariff-schedule", help="When tariff 2 is active, e.g. 22:00-06:00.")
@click.option(
    "--type-number",
    default="685-382-OK-15",
    show_default=True,
    help="Type number 685-X3X2X1-Y2Y1-Z2Z1 in the identification line.",
)
@click.option(
    "--customer-number",
    default="00054042",
    show_default=True,
    help="Customer number (register 0.0) of the first meter; the others count up.",
)
@click.option(
    "--faults",
    "faults_text",
    default="",
    help="Probabilities per readout, e.g. flip=0.1,late=0.05,xor=1 (kinds: flip, parity, bcc, "
    "drop, double, truncate, silent, late, noise, xor).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of faults and delays.")
@click.option(
    "--eight-bit/--seven-bit",
    "eight_bit",
    default=None,
    help="8-bit bytes with the even-parity bit (TCP default) or 7-bit characters (pty default).",
)
@click.option(
    "--bcc",
    type=click.Choice(["sum7", "xor"]),
    default="sum7",
    show_default=True,
    help="Block check character: the Kamstrup sum or the IEC XOR.",
)
def emulate(
    *,
    use_pty: bool,
    listen: str,
    meters: int,
    speed: float,
    delay: str,
    load_text: str,
    tariff_schedule: str | None,
    type_number: str,
    customer_number: str,
    faults_text: str,
    seed: int,
    eight_bit: bool | None,
    bcc: str,
) -> int:
    """Serve emulated Kamstrup 382 meters until interrupted."""
    from kamstrup382.emulator import Emulator, Faults, MeterSettings  # noqa: PLC0415
    from kamstrup382.emulator.load import parse_load  # noqa: PLC0415
    from kamstrup382.reader.aio import new_event_loop  # noqa: PLC0415 - uvloop if installed

    try:
        host, port = parse_listen(listen)
        emulator = Emulator(
            meters,
            transport="pty" if use_pty else "tcp",
            host=host,
            port=port,
            speed=speed,
            delay=parse_delay(delay),
            eight_bit=eight_bit,
            bcc=bcc,
            faults=Faults.parse(faults_text),
            seed=seed,
            load=None if load_text.strip() == "household" else parse_load(load_text),
            tariff_schedule=tariff_schedule,
            settings=MeterSettings(type_number=type_number, customer_number=customer_number),
        )
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_serve(emulator))
    except Kamstrup382Error as exc:
        click.echo(f"k382 emulate: {exc}", err=True)
        return 2


async def _serve(emulator: Emulator) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with emulator:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            _announce(emulator)
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        readouts = sum(len(emulator.log(i)) for i in range(len(emulator.models)))
    click.echo(f"k382 emulate: stopped after {readouts} readouts")
    return 0


def _announce(emulator: Emulator) -> None:
    ports, models = emulator.ports, emulator.models
    line = "8-bit with parity" if emulator.eight_bit else "7-bit"
    click.echo(
        f"k382 emulate: {len(ports)} Kamstrup 382 meter{'s' if len(ports) > 1 else ''}, "
        f"speed x{emulator.speed:g}, {line}, bcc {emulator.bcc}, faults {emulator.faults}"
    )
    if len(ports) <= LIST_LIMIT:
        for index, (port, model) in enumerate(zip(ports, models, strict=True), start=1):
            customer = model.settings.customer_number
            click.echo(f"meter {index} (customer {customer}): {port}")
    elif emulator.transport == "tcp":
        first, last = ports[0], ports[-1].rsplit(":", 1)[1]
        click.echo(f"meters 1-{len(ports)}: {first}-{last} (one port per meter)")
    else:
        click.echo(f"meters 1-{len(ports)}: {ports[0]} ... {ports[-1]}")
    click.echo("Ctrl-C stops.")
    sys.stdout.flush()
