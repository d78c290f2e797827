"""``k382 pulses SOURCE``: live power from a meter's pulse output, for someone wiring a module.

    k382 pulses gpio:/dev/gpiochip0:17 --constant 1000
    k382 pulses tcp://127.0.0.1:9000            # k382 emulate --pulse-listen 127.0.0.1:9000

One line per pulse event (the power from the interval, the pulses so far, glitches rejected);
on a terminal, one line refreshed in place, which also shows the power falling while no pulse
comes. ``--events N`` stops after N events. Ctrl-C stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import click

from kamstrup382.cli.options import Number
from kamstrup382.errors import Kamstrup382Error
from kamstrup382.pulses import PowerEstimate
from kamstrup382.pulses.estimate import Power
from kamstrup382.pulses.sources import PulseEvent, PulseSource, open_pulse_source

__all__ = ["pulses"]

#: Seconds between two refreshes of the terminal line while no pulse comes.
REFRESH = 0.5


def _text(power: Power, estimate: PowerEstimate) -> str:
    if power.watts is None:
        figure = "   ... W (waiting for a second pulse)"
    else:
        figure = f"{power.watts:9.1f} W{' (at most: no pulse since)' if power.bounded else ''}"
    return f"{figure}  pulses {estimate.pulses}  rejected {estimate.rejected}"


async def _follow(
    source: PulseSource, estimate: PowerEstimate, events: int | None, tty: bool
) -> None:
    seen = 0
    stream = source.events()
    next_event: asyncio.Task[PulseEvent] | None = None
    # the source's clock and ours: the silence since the last pulse is measured on ours
    last_ours: int | None = None
    try:
        while events is None or seen < events:
            if next_event is None:
                next_event = asyncio.ensure_future(anext(stream))
            done, _ = await asyncio.wait({next_event}, timeout=REFRESH if tty else None)
            if not done:  # a terminal: show the power falling while nothing comes
                if last_ours is not None and estimate.last_pulse_ns is not None:
                    at = estimate.last_pulse_ns + (time.monotonic_ns() - last_ours)
                    click.echo(f"\r{_text(estimate.power(at), estimate)}   ", nl=False)
                continue
            event = next_event.result()
            next_event = None
            seen += 1
            if event.gap:
                estimate.gap()
            estimate.pulse(event.at_ns, event.count, missed=event.missed)
            last_ours = time.monotonic_ns()
            line = _text(estimate.power(event.at_ns), estimate)
            if tty:
                click.echo(f"\r{line}   ", nl=False)
            else:
                click.echo(line)
    finally:
        if next_event is not None:
            next_event.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await next_event
        await stream.aclose()
        if tty:
            click.echo("")


@click.command("pulses")
@click.argument("source")
@click.option(
    "--constant",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="IMP_PER_KWH",
    help="Pulses per kWh (printed on the meter).",
)
@click.option(
    "--max-power",
    type=Number(min=0, min_open=True, max=1e9),
    default=None,
    metavar="WATTS",
    help="Pulses closer than this power allows are glitches (default: the 382's 79.7 kW).",
)
@click.option("--events", type=click.IntRange(min=1), default=None, help="Stop after N events.")
def pulses(source: str, constant: int, max_power: float | None, events: int | None) -> int:
    """Show live power from a meter's pulse output (pin 3)."""
    try:
        pulse_source = open_pulse_source(source)
        kwargs = {} if max_power is None else {"max_power_w": max_power}
        estimate = PowerEstimate(constant, **kwargs)
        asyncio.run(_follow(pulse_source, estimate, events, sys.stdout.isatty()))
    except KeyboardInterrupt:
        return 130
    except Kamstrup382Error as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    return 0
