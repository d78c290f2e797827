"""``k382 emulate``: serve emulated Kamstrup 382 meters on TCP ports or pseudo-terminals.

Prints where each meter listens (one line per meter, or the range for many), then serves
until SIGINT or SIGTERM and exits 0. Exit status 2: a wrong option value (one line naming the
option: e.g. a ``--load`` that is not finite, negative, or beyond what the meter can measure,
phases x 253 V x 105 A), or more meters than the open-file limit can serve (said at once,
before any port is opened). Runs on uvloop
where it is installed (many meters in one process), on asyncio's loop otherwise.

    k382 emulate                                  # one meter on 127.0.0.1, a free port
    k382 emulate --tcp 127.0.0.1:21000 --meters 100 --speed 1
    k382 emulate --pty --faults flip=0.1,late=0.05 --seed 7
    k382 emulate --load constant:2 --pulse-constant 1000 --pulse-out - --control

Pulse out (module pin 3): ``--pulse-out FILE`` (``-``: standard output) gets one JSON line per
pulse event, at the pulse's instant: ``{"meter": 1, "count": 1, "at": "2026-...Z", "total": 7}``
(meter as numbered in the listing, pulses in this event, the instant of the last of them, the
meter's pulses since start). ``--pulse-constant`` sets the imp/kWh.

Ground truth: ``--log FILE`` (``-``: standard output; a file is started afresh) gets one JSON
line per request once the line is done with it: the meter (as numbered in the listing), the
request's number, the meter's true registers (``values``, exact text; ``null`` when silent),
the clean reply they make (``clean``), what actually went out (``sent``, 7-bit; ``wire``, the
bytes in hex), whether all of it did (``complete``) and the faults applied (kind, offset,
detail), so that each stored reading can be compared with what the meter held.

Pulse in (module pin 4), with ``--control``: one command a line on standard input, each
answered on standard error with ``k382 emulate: ok: ...`` or ``k382 emulate: error: ...``:

    tariff 2        short pins 1 and 4 on every meter (tariff 2); ``tariff 1`` opens them
    3 tariff 2      the same on meter 3 only
    pulse 5         5 pulses into pin 4 (register 1.26) of every meter: needs --pulse-input
    2 pulse 5       the same on meter 2 only
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Literal, TextIO

import click

from kamstrup382.cli.options import Number
from kamstrup382.errors import ConfigError, Kamstrup382Error, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from kamstrup382.emulator.load import ConstantLoad, CsvLoad, HouseholdLoad

    Load = ConstantLoad | CsvLoad | HouseholdLoad

    from kamstrup382.emulator.line import Exchange
    from kamstrup382.emulator.pulse_server import PulseServer
    from kamstrup382.emulator.server import Emulator

__all__ = [
    "Command",
    "check_load",
    "emulate",
    "max_power_kw",
    "open_out",
    "parse_command",
    "parse_delay",
    "parse_listen",
]

#: The longest answer delay (``--delay``), in seconds: far beyond any reader's answer window.
MAX_DELAY = 60.0
#: With more meters than this, the addresses are printed as one range.
LIST_LIMIT = 10
#: ``--speed`` from a thousandth to a million times the true 300 baud.
SPEEDS = (0.001, 1_000_000.0)


def max_power_kw(phases: int) -> Fraction:
    """The most power a meter of ``phases`` phases measures, in kW: the dialect's
    (:meth:`~kamstrup382.protocol.dialects.Dialect.max_power_kw`, the same 5(105)A for every
    model of the 382)."""
    from kamstrup382.protocol import KAMSTRUP_382  # noqa: PLC0415

    return Fraction(KAMSTRUP_382.max_power_kw(phases))


def check_load(text: str, type_number: str) -> Load | None:
    """The ``--load`` for meters of ``type_number`` (``None``: the default household); a
    :class:`UsageError` naming ``--load`` for a load that is not a finite power, is negative,
    or draws more than such a meter can measure (:func:`max_power_kw`)."""
    from kamstrup382.emulator.load import parse_load  # noqa: PLC0415
    from kamstrup382.protocol import parse_type_number  # noqa: PLC0415

    if text.strip() == "household":
        return None
    try:
        load = parse_load(text)
    except UsageError as exc:
        said = exc.problem if isinstance(exc, ConfigError) and exc.key == "load" else str(exc)
        raise UsageError(f"--load: {said}") from None
    try:
        phases = parse_type_number(type_number).phases
    except Kamstrup382Error:
        phases = 3  # a bad --type-number is said by the meter's settings
    peak, limit = load.max_kw, max_power_kw(phases)
    if peak > limit:
        shown = f"up to {float(peak):.4g}" if peak < 10**15 else "more than 1e15"
        raise UsageError(
            f"--load {text!r}: draws {shown} kW, more than a {phases}-phase meter "
            f"measures ({phases} x 253 V x 105 A = {float(limit):g} kW)"
        )
    return load


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
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= MAX_DELAY):
        raise UsageError(
            f"--delay {text!r}: expected seconds from 0 to {MAX_DELAY:g}, LO no more than HI"
        )
    return (lo, hi) if dash else lo


@dataclass(frozen=True)
class Command:
    """One control line: on ``meter`` (1-based; ``None``: every meter), ``tariff`` 1 or 2
    (pins 1-4 open or shorted) or ``pulse`` N pulses into pin 4."""

    meter: int | None
    action: Literal["tariff", "pulse"]
    value: int


def parse_command(line: str, meters: int) -> Command:
    """``[METER] tariff 1|2`` or ``[METER] pulse N``; a wrong line raises UsageError saying why."""
    words = line.split()
    meter: int | None = None
    if words and words[0].isdigit():
        meter = int(words[0])
        if not 1 <= meter <= meters:
            raise UsageError(f"{line.strip()!r}: no meter {meter} (meters 1-{meters})")
        words = words[1:]
    if len(words) != 2 or words[0] not in ("tariff", "pulse"):
        raise UsageError(f"{line.strip()!r}: expected '[METER] tariff 1|2' or '[METER] pulse N'")
    action: Literal["tariff", "pulse"] = "tariff" if words[0] == "tariff" else "pulse"
    try:
        value = int(words[1])
    except ValueError:
        value = -1
    if action == "tariff" and value not in (1, 2, 3, 4):
        raise UsageError(
            f"{line.strip()!r}: tariff must be 1 (pins 1-4 open) or 2 (shorted); 3 or 4 on a 382C"
        )
    if action == "pulse" and value < 0:
        raise UsageError(f"{line.strip()!r}: pulse count must be a whole number >= 0")
    return Command(meter, action, value)


def _apply(emulator: Emulator, command: Command) -> str:
    """Carry out ``command``; returns the acknowledgement (UsageError if the meter refuses)."""
    indexes = range(len(emulator.models)) if command.meter is None else [command.meter - 1]
    for index in indexes:
        model = emulator.models[index]
        pulse_mode = model.settings.pulse_input_mode
        if command.action == "pulse" and not pulse_mode:
            raise UsageError("pulse: pin 4 switches the tariff here (start with --pulse-input)")
        if command.action == "tariff" and command.value > 2:
            model.select_tariff(command.value)  # a 382C's own tariffs 3 and 4
            continue
        if command.action == "tariff" and pulse_mode:
            raise UsageError("tariff: pin 4 counts pulses here (--pulse-input)")
        if command.action == "tariff" and model.tariff_schedule is not None:
            raise UsageError("tariff: --tariff-schedule drives pin 4 here")
        if command.action == "tariff":
            if model.tariffs > 2:
                model.select_tariff(None)  # back to what pin 4 selects
            model.tariff_input = command.value == 2
        else:
            model.pulse_in(command.value)
    who = f"meter {command.meter}" if command.meter is not None else "every meter"
    if command.action == "tariff" and command.value > 2:
        return f"{who}: tariff {command.value} (the meter's own selection)"
    if command.action == "tariff":
        pins = "shorted" if command.value == 2 else "open"
        return f"{who}: tariff {command.value} (pins 1-4 {pins})"
    return f"{who}: {command.value} pulses into pin 4 (1.26)"


@click.command("emulate")
@click.option(
    "--model",
    type=click.Choice(["685-382", "382c", "382jx3"], case_sensitive=False),
    default="685-382",
    show_default=True,
    help="685-382: the specification's meter, IEC 61107 mode A at 300 baud; 382c: mode A "
    "with OBIS-style codes, tariffs 1-4, identification /KAM 68438BC450000; 382jx3: KMP "
    "(binary) at --baud.",
)
@click.option(
    "--baud",
    type=click.Choice(["1200", "2400", "4800", "9600", "19200"]),
    default="9600",
    show_default=True,
    help="KMP models: the line's baud rate (8N1).",
)
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
    type=Number(min=SPEEDS[0], max=SPEEDS[1]),
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
    help="Type number 685-X3X2X1-Y2Y1-Z2Z1 in the identification line (685-382; its phases "
    "bound the power of either model).",
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
    "shift, swap, "
    "drop, double, truncate, silent, late, noise, xor); script=silent/bcc+late/none gives "
    "the faults of each meter's first requests.",
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
@click.option(
    "--pulse-constant",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="IMP_PER_KWH",
    help="Pulse out (pin 3) constant, impulses per kWh.",
)
@click.option(
    "--pulse-out",
    metavar="FILE|-",
    help='Write each pulse-out event as it happens, one JSON line: {"meter": N, "count": '
    'C, "at": ISO UTC, "total": T} (- for standard output).',
)
@click.option(
    "--pulse-listen",
    metavar="HOST:PORT",
    help="Serve each meter's pulse-out on TCP (meter n on PORT + n - 1; 0: free ports), the "
    'same JSON lines as --pulse-out, to every client: pulses = "tcp://HOST:PORT" in a '
    "collector's config, or k382 pulses tcp://HOST:PORT.",
)
@click.option(
    "--log",
    "log_to",
    metavar="FILE|-",
    help="Write the ground truth of each request once answered, one JSON line: the meter's "
    "true values, the reply sent, the faults (- for standard output).",
)
@click.option(
    "--pulse-input",
    is_flag=True,
    help="Pin 4 counts pulses into register 1.26 instead of switching the tariff.",
)
@click.option(
    "--control",
    is_flag=True,
    help="Read pin 4 commands on standard input, one a line: '[METER] tariff 1|2' (pins 1-4 "
    "open / shorted; 3|4: a 382C's own tariffs) or '[METER] pulse N' (with --pulse-input); no "
    "METER: every meter. Each "
    "is answered on standard error with 'ok: ...' or 'error: ...'.",
)
@click.option(
    "--control-listen",
    metavar="HOST:PORT",
    help="Take the same commands as --control from TCP clients, one a line, each answered "
    "with one line 'ok: ...' or 'error: ...': a collector's tariff_output = \"tcp://HOST:PORT\".",
)
def emulate(
    *,
    model: str,
    baud: str,
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
    pulse_constant: int,
    pulse_out: str | None,
    pulse_listen: str | None,
    log_to: str | None,
    pulse_input: bool,
    control: bool,
    control_listen: str | None,
) -> int:
    """Serve emulated Kamstrup 382 meters until interrupted."""
    from kamstrup382.emulator import Emulator, Faults, MeterSettings  # noqa: PLC0415
    from kamstrup382.emulator.open_files import reserve_files  # noqa: PLC0415
    from kamstrup382.reader.aio import new_event_loop  # noqa: PLC0415 - uvloop if installed

    model = model.lower()
    if model == "382jx3":
        from kamstrup382.cli.emulate_kmp import emulate_kmp  # noqa: PLC0415

        return emulate_kmp(
            model,
            int(baud),
            listen,
            meters,
            delay,
            faults_text,
            seed,
            customer_number,
            log_to,
            use_pty=use_pty,
            load_text=load_text,
            tariff_schedule=tariff_schedule,
            type_number=type_number,
        )
    try:
        host, port = parse_listen(listen)
        pulses_at = parse_listen(pulse_listen) if pulse_listen is not None else None
        control_at = parse_listen(control_listen) if control_listen is not None else None
        load = check_load(load_text, type_number)
        reserve_files("pty" if use_pty else "tcp", meters)  # refuse at once what cannot be served
        with contextlib.ExitStack() as files:
            out = open_out(files, pulse_out, "--pulse-out", "a")
            truth = open_out(files, log_to, "--log", "w")
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
                load=load,
                tariff_schedule=tariff_schedule,
                settings=MeterSettings(
                    model=model,
                    type_number=type_number,
                    customer_number=customer_number,
                    pulse_constant=pulse_constant,
                    pulse_input_mode=pulse_input,
                ),
                on_exchange=None if truth is None else _truth_writer(truth),
            )
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                return runner.run(
                    _serve(emulator, out, pulses_at, control=control, control_at=control_at)
                )
    except Kamstrup382Error as exc:
        click.echo(f"k382 emulate: {exc}", err=True)
        return 2


def open_out(
    files: contextlib.ExitStack, target: str | None, option: str, mode: Literal["a", "w"]
) -> TextIO | None:
    """``target`` opened for ``option`` (closed with ``files``); ``-``: standard output."""
    if target is None:
        return None
    if target == "-":
        return sys.stdout
    try:
        return files.enter_context(open(target, mode, encoding="utf-8", buffering=1))
    except OSError as exc:
        raise UsageError(f"{option} {target!r}: {exc.strerror}") from exc


def _truth_writer(out: TextIO) -> Callable[[int, Exchange], None]:
    def write(index: int, exchange: Exchange) -> None:
        out.write(json.dumps({"meter": index + 1, **exchange.record()}) + "\n")

    return write


def _pulse_writer(out: TextIO, meter: int) -> Callable[[int, datetime], None]:
    from kamstrup382.emulator.pulse_server import pulse_line  # noqa: PLC0415

    total = 0

    def write(count: int, at: datetime) -> None:
        nonlocal total
        total += count
        out.write(pulse_line(meter, count, at, total))
        out.flush()

    return write


def _read_control(loop: asyncio.AbstractEventLoop, emulator: Emulator) -> None:
    """The control channel's thread: each stdin line is carried out in the loop."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            loop.call_soon_threadsafe(_control, emulator, line)
        except RuntimeError:  # the loop has ended
            return


def _reply(emulator: Emulator, line: str) -> str:
    """A control line carried out: ``ok: ...`` or ``error: ...``."""
    try:
        return "ok: " + _apply(emulator, parse_command(line, len(emulator.models)))
    except Kamstrup382Error as exc:
        return f"error: {exc}"


def _control(emulator: Emulator, line: str) -> None:
    click.echo(f"k382 emulate: {_reply(emulator, line)}", err=True)
    sys.stderr.flush()


async def _serve(
    emulator: Emulator,
    pulse_out: TextIO | None,
    pulses_at: tuple[str, int] | None,
    *,
    control: bool,
    control_at: tuple[str, int] | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with emulator:
        pulse_server = None
        if pulses_at is not None:
            from kamstrup382.emulator.pulse_server import PulseServer  # noqa: PLC0415

            pulse_server = PulseServer(emulator.subscribe_pulses, len(emulator.models), *pulses_at)
            await pulse_server.start()
        control_server = None
        if control_at is not None:
            from kamstrup382.emulator.control_server import ControlServer  # noqa: PLC0415

            control_server = ControlServer(lambda line: _reply(emulator, line), *control_at)
            await control_server.start()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            if pulse_out is not None:
                for index in range(len(emulator.models)):
                    emulator.subscribe_pulses(index, _pulse_writer(pulse_out, index + 1))
            _announce(emulator, pulse_server, control_server.url if control_server else None)
            if control:
                threading.Thread(
                    target=_read_control, args=(loop, emulator), name="k382-control", daemon=True
                ).start()
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            if pulse_server is not None:
                await pulse_server.close()
            if control_server is not None:
                await control_server.close()
        readouts = sum(len(emulator.log(i)) for i in range(len(emulator.models)))
    click.echo(f"k382 emulate: stopped after {readouts} readouts")
    return 0


def _announce(
    emulator: Emulator, pulse_server: PulseServer | None = None, control: str | None = None
) -> None:
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
    if pulse_server is not None:
        pulse_ports = pulse_server.ports
        if len(pulse_ports) <= LIST_LIMIT:
            for index, where in enumerate(pulse_ports, start=1):
                click.echo(f"meter {index} pulses: {where}")
        else:
            click.echo(
                f"meters 1-{len(pulse_ports)} pulses: {pulse_ports[0]} ... {pulse_ports[-1]}"
            )
    if control:
        click.echo(f"control: {control}")
    click.echo("Ctrl-C stops.")
    sys.stdout.flush()
