"""``k382 demo``: an emulated meter, the collector and the dashboard, in one command.

The meter is a household (:class:`~kamstrup382.emulator.HouseholdLoad`: a night base load,
morning and evening peaks, weekends different) with a night tariff (its tariff input shorted
22:00-06:00, so tariff 2 counts the night) and the registers of a meter some years in service.
Everything runs in one event loop on a virtual clock (:class:`~kamstrup382.clock.ScaledClock`)
that the meter model and the collector share: at the default factor of 1440 a day of readings
appears every minute. The readings go to a fresh SQLite file: a temporary one, deleted when the
demo stops, unless ``--db`` names one or ``--keep`` asks for ``./k382-demo-DATE.sqlite``. The
page says that its times are virtual. Ctrl-C (SIGINT) or SIGTERM stops it all, exit status 0.

Exit status 2, with one line naming the option, for every usage error: a bad value, an
address that needs a token, a ``--db`` that exists or cannot be created, a dashboard port in
use. 1 for a failure while running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import click

from kamstrup382.cli.options import Number, check_duration
from kamstrup382.clock import ScaledClock
from kamstrup382.collector import Collector
from kamstrup382.collector.config import parse_config
from kamstrup382.emulator import Emulator, Faults, HouseholdLoad, MeterSettings, TariffSchedule
from kamstrup382.errors import ConfigError, Kamstrup382Error, UsageError
from kamstrup382.storage.url import open_storage
from kamstrup382.web import create_app
from kamstrup382.web.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    allowed_hosts,
    check_listen,
    parse_listen,
    run_server,
    stop_on_signals,
)

_T = TypeVar("_T")

__all__ = ["DEMO_METER", "DEMO_SETTINGS", "NIGHT_TARIFF", "default_start", "demo"]

DEMO_METER = "demo"
#: How much faster the emulated meter talks than an honest 300 baud line.
LINE_SPEED = 200.0
#: When the demo meter's tariff input selects tariff 2 (UTC wall clock).
NIGHT_TARIFF = "22:00-06:00"
#: An honest optical head now and then catches a bad character: the reader retries.
LINE_FAULTS = "parity=0.01,bcc=0.005"
#: Seconds before the reader's first retry: the emulated line is fast, so the wait can be short
#: and a retry fits in the slot (15 virtual minutes are 0.6 s of real time at 1440x).
RETRY_BACKOFF = 0.05
#: A meter some years in service: about 5 MWh a year, a bit over a third of it at night.
DEMO_SETTINGS = MeterSettings(
    customer_number="00054042",
    energy_kwh=17_412,
    tariff_1_kwh=11_180,
    tariff_2_kwh=6_232,
    hour_counter_h=30_517,
    actual_peak_kw=Decimal("2.7"),
    last_month_peak_kw=Decimal("3.1"),
)


#: The years a demo may start in: its virtual clock runs for years and must not leave datetime's.
START_YEARS = range(1970, 3000)


def _check_start(
    value: datetime | None, ctx: click.Context, param: click.Parameter
) -> datetime | None:
    if value is not None and value.year not in START_YEARS:
        raise click.BadParameter(
            f"must be in the years {START_YEARS.start}-{START_YEARS.stop - 1}", ctx, param
        )
    return value


def _create_db(db: Path) -> None:
    """Create ``db`` empty (SQLite's new database), readable by its owner only: it must not
    exist and its directory must be writable."""
    try:
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{db} exists: the demo starts from a fresh file") from None
    except OSError as exc:
        raise UsageError(f"cannot create {db}: {exc.strerror or exc}") from None
    os.close(fd)


def _checked(option: str, check: Callable[[], _T]) -> _T:
    """``check()``; its usage error becomes click's, naming ``option`` (exit status 2)."""
    try:
        return check()
    except UsageError as exc:
        said = exc.problem if isinstance(exc, ConfigError) and exc.key == option else str(exc)
        raise click.BadParameter(said, param_hint=f"'{option}'") from exc


def default_start(now: datetime | None = None) -> datetime:
    """Midnight UTC two days before this month began: a month change comes early in the demo."""
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


async def _demo(
    *,
    listen_text: str,
    factor: float,
    line_speed: float,
    db: Path | None,
    start: datetime,
    interval: str,
    tariff: TariffSchedule,
    faults: Faults,
    token: str | None,
) -> None:
    listen = parse_listen(listen_text)
    stop = asyncio.Event()
    # signals from the start: a Ctrl-C while the meter or the storage comes up stops as cleanly
    with stop_on_signals(stop), contextlib.ExitStack() as stack:
        kept = db is not None
        if db is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="k382-demo-")))
            db = directory / "demo.sqlite"
        url = f"sqlite:///{db}"
        clock = ScaledClock(start, factor)
        async with Emulator(
            meters=1,
            transport="tcp",
            host="127.0.0.1",
            port=0,
            speed=line_speed,
            clock=clock,
            load=HouseholdLoad(),
            settings=DEMO_SETTINGS,
            tariff_schedule=tariff,
            faults=faults,
        ) as emulator:
            config = parse_config(
                {
                    "storage": {"url": url},
                    "collector": {"interval": interval, "id": "demo", "backoff": RETRY_BACKOFF},
                    "meters": [{"name": DEMO_METER, "port": emulator.ports[0]}],
                },
                env={},
            )
            writer = await asyncio.to_thread(open_storage, url)
            stack.callback(writer.close)
            reader = await asyncio.to_thread(open_storage, url)
            stack.callback(reader.close)
            app = create_app(
                reader,
                token=token,
                title="Kamstrup 382 demo",
                refresh=5.0,
                allowed_hosts=allowed_hosts(listen, token),
                note=(
                    f"A demo: an emulated meter read on a virtual clock that runs {factor:g} "
                    f"times faster than real time (from {start:%Y-%m-%d %H:%M} UTC); every time "
                    "shown is virtual."
                ),
            )

            def ready(address: str) -> None:
                click.echo(
                    f"k382 demo: an emulated Kamstrup 382 (a household, tariff 2 {tariff} UTC) "
                    f"on {emulator.ports[0]},"
                )
                click.echo(
                    f"read every {interval} of virtual time from {start:%Y-%m-%d %H:%M} UTC, "
                    f"{factor:g}x faster than real time, into {db}"
                )
                if str(faults):
                    click.echo(f"Line faults per readout: {faults} (the reader retries)")
                click.echo(f"Dashboard: {address}/")
                click.echo("Ctrl-C stops.")

            collector = Collector(config, writer, clock=clock, collector_id="demo")
            collecting = asyncio.create_task(collector.run(stop), name="k382-demo-collector")
            # should the collector end (it only does on stop, or on a bug), so does the demo
            collecting.add_done_callback(lambda _: stop.set())
            try:
                await run_server(app, listen, stop, on_ready=ready)
            finally:
                stop.set()
                try:
                    await collecting
                finally:
                    await collector.close()
    if kept:
        click.echo(f"The readings are kept in {db}: k382 serve --storage sqlite:///{db}")
    click.echo("k382 demo stopped.")


@click.command("demo")
@click.option(
    "--http",
    "listen",
    metavar="HOST:PORT",
    default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
    show_default=True,
    help="Where the dashboard listens (port 0: any free port).",
)
@click.option(
    "--speed-factor",
    "factor",
    type=Number(min=1.0, max=100_000.0),
    default=1440.0,
    show_default=True,
    help="How much faster the virtual clock runs (1440: a day a minute).",
)
@click.option(
    "--line-speed",
    type=Number(min=1.0, max=10_000.0),
    default=LINE_SPEED,
    show_default=True,
    help="How much faster than 300 baud the emulated meter answers.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the readings in this new SQLite file (default: a temporary one).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the readings when the demo stops: in ./k382-demo-DATE.sqlite (or --db).",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    callback=lambda ctx, param, value: _check_start(value, ctx, param),
    help="Virtual start time, UTC (default: two days before the 1st of this month).",
)
@click.option(
    "--interval",
    default="15m",
    callback=check_duration,
    show_default=True,
    help="Readout interval in virtual time.",
)
@click.option(
    "--tariff",
    default=NIGHT_TARIFF,
    show_default=True,
    metavar="HH:MM-HH:MM[,...]",
    help="When the meter's tariff input selects tariff 2 (UTC).",
)
@click.option(
    "--faults",
    default=LINE_FAULTS,
    show_default=True,
    help="Faults of the emulated line (as for k382 emulate; 'none' for a perfect line).",
)
@click.option(
    "--token",
    envvar=["K382_HTTP_TOKEN", "K382_TOKEN"],
    help="Require this token (as for k382 serve; better from $K382_HTTP_TOKEN than here).",
)
def demo(  # noqa: PLR0917 (click passes the options by name)
    listen: str,
    factor: float,
    line_speed: float,
    db: Path | None,
    keep: bool,
    start: datetime | None,
    interval: str,
    tariff: str,
    faults: str,
    token: str | None,
) -> int:
    """An emulated meter, the collector and the dashboard, on a fast virtual clock.

    The meter is a household with a night tariff (tariff 2 from 22:00 to 06:00 UTC); at the
    default speed a day of quarter-hourly readings appears every minute. Open the printed
    address in a browser. Ctrl-C stops everything.
    """
    begin = start.replace(tzinfo=UTC) if start is not None else default_start()
    schedule = _checked("--tariff", lambda: TariffSchedule.parse(tariff))
    line_faults = _checked("--faults", lambda: Faults.parse(faults))
    _checked("--http", lambda: check_listen(parse_listen(listen), token or None))
    if db is None and keep:  # a file of its own in the current directory
        db = Path.cwd() / f"k382-demo-{datetime.now(UTC):%Y%m%d-%H%M%S}.sqlite"
    if db is not None:
        chosen = db
        _checked("--db" if not keep else "--keep", lambda: _create_db(chosen))
    try:
        asyncio.run(
            _demo(
                listen_text=listen,
                factor=factor,
                line_speed=line_speed,
                db=db,
                start=begin,
                interval=interval,
                tariff=schedule,
                faults=line_faults,
                token=token or None,
            )
        )
    except UsageError as exc:  # the dashboard's port in use, or taken meanwhile
        hint = " (another dashboard there? --http 127.0.0.1:0 takes any free port)"
        raise click.BadParameter(f"{exc}{hint}", param_hint="'--http'") from exc
    except Kamstrup382Error as exc:
        raise click.ClickException(str(exc)) from exc
    return 0
