"""``k382 emulate --model 382jx3``: KMP meters on TCP ports or ptys, at the true baud rate.

Serves until SIGINT or SIGTERM. ``--faults`` takes KMP's own kinds (``echo``, ``crc``,
``stuffing``, ``late``, ``silent``; :mod:`kamstrup382.emulator.kmp_faults`), ``--log`` gets one
JSON line per request (the request, the registers' true values, what went out, the faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import TextIO

import click

from kamstrup382.cli.emulate import check_load, open_out, parse_delay, parse_listen
from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_line import KmpExchange
from kamstrup382.emulator.kmp_server import PRECISE_LOOP_METERS, KmpEmulator, precise_event_loop
from kamstrup382.emulator.load import Load
from kamstrup382.emulator.settings import MeterSettings
from kamstrup382.errors import Kamstrup382Error
from kamstrup382.render import format_value

__all__ = ["KMP_MODELS", "emulate_kmp", "exchange_record", "serve_kmp"]

#: The models that speak KMP on the optical port, and their line's bits per character.
KMP_MODELS = {"382jx3": 10}


def exchange_record(meter: int, exchange: KmpExchange) -> dict[str, object]:
    values = exchange.values
    return {
        "meter": meter,
        "request": exchange.request.hex(),
        "cid": exchange.cid,
        "values": None if values is None else {k: format_value(v) for k, v in values.items()},
        "sent": exchange.sent.hex(),
        "complete": exchange.complete,
        "faults": list(exchange.faults),
    }


async def _serve(emulator: KmpEmulator, log: TextIO | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with emulator:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        rules = emulator.rules
        click.echo(
            f"k382 emulate: {len(emulator.ports)} Kamstrup 382Jx3 (KMP) "
            f"meter{'s' if len(emulator.ports) > 1 else ''}, {rules.baud} baud "
            f"{'8N1' if rules.bits_per_character == 10 else '8N2'}, answer after "
            f"{rules.delay:g} s, faults {rules.faults}"
        )
        for index, (port, model) in enumerate(zip(emulator.ports, emulator.models, strict=True)):
            click.echo(f"meter {index + 1} (serial {int(model.settings.customer_number)}): {port}")
        click.echo("Ctrl-C stops.")
        sys.stdout.flush()
        written = [0] * len(emulator.ports)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.2)
                if log is not None:
                    _write_log(emulator, log, written)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if log is not None:
            _write_log(emulator, log, written, final=True)
        exchanges = sum(len(emulator.log(i)) for i in range(len(emulator.ports)))
    click.echo(f"k382 emulate: stopped after {exchanges} requests")
    return 0


def _write_log(
    emulator: KmpEmulator, log: TextIO, written: list[int], *, final: bool = False
) -> None:
    for index in range(len(written)):
        entries = emulator.log(index)
        while written[index] < len(entries):
            entry = entries[written[index]]
            if not final and entry.answer_start is not None and not entry.complete:
                break  # still going out
            log.write(json.dumps(exchange_record(index + 1, entry)) + "\n")
            written[index] += 1
    log.flush()


def serve_kmp(
    *,
    model: str,
    host: str,
    port: int,
    meters: int,
    baud: int,
    delay: float | tuple[float, float],
    faults_text: str,
    seed: int,
    customer_number: str,
    log: TextIO | None,
    transport: str = "tcp",
    load: Load | None = None,
    tariff_schedule: str | None = None,
    type_number: str = "685-382-OK-15",
) -> int:
    emulator = KmpEmulator(
        meters,
        host=host,
        port=port,
        baud=baud,
        bits_per_character=KMP_MODELS[model],
        delay=delay,
        faults=KmpFaults.parse(faults_text),
        seed=seed,
        settings=MeterSettings(type_number=type_number, customer_number=customer_number),
        transport=transport,
        load=load,
        tariff_schedule=tariff_schedule,
    )
    if meters <= PRECISE_LOOP_METERS:
        with asyncio.Runner(loop_factory=precise_event_loop) as runner:
            return runner.run(_serve(emulator, log))
    return asyncio.run(_serve(emulator, log))


def emulate_kmp(  # noqa: PLR0917 - the options of emulate, passed on
    model: str,
    baud: int,
    listen: str,
    meters: int,
    delay: str,
    faults_text: str,
    seed: int,
    customer_number: str,
    log_to: str | None,
    *,
    use_pty: bool,
    load_text: str,
    tariff_schedule: str | None,
    type_number: str,
) -> int:
    """``k382 emulate --model 382jx3 ...``: the options checked, the meters served; exit
    status 2 for a wrong option value."""
    try:
        host, port = parse_listen(listen)
        load = check_load(load_text, type_number)
        with contextlib.ExitStack() as files:
            log = open_out(files, log_to, "--log", "w")
            return serve_kmp(
                model=model,
                host=host,
                port=port,
                meters=meters,
                baud=baud,
                delay=parse_delay(delay),
                faults_text=faults_text,
                seed=seed,
                customer_number=customer_number,
                log=log,
                transport="pty" if use_pty else "tcp",
                load=load,
                tariff_schedule=tariff_schedule,
                type_number=type_number,
            )
    except Kamstrup382Error as exc:
        click.echo(f"k382 emulate: {exc}", err=True)
        return 2
