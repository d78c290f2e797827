"""``k382 collect``: read the configured meters on schedule into the storage.

``--once`` reads every meter once and exits: 0 when every meter was read, 1 otherwise, with one
line per meter not read on stderr. ``--emulator N`` starts N emulated meters on loopback TCP in
the same process and reads them too (without ``--config``: only them, into the default storage
or ``--storage``), so that the collector can be tried without a meter; ``--kmp-emulator N``
adds N emulated 382Jx3 meters read over KMP. SIGINT and SIGTERM stop
it cleanly: in-flight readouts get ``[collector] grace`` seconds, nothing half-written is stored.
SIGHUP reads the ``--config`` file again and takes its meters (added, removed, changed; the
readouts in flight finish); a file with an error is logged and the running configuration kept;
a change to another table is named in the log and applied by a restart.
Exit status 2: the configuration (or a command-line value) is wrong.

Exit status 3: the storage refused results (read-only, full, unreachable). Each batch was tried
``[storage] retries`` more times, then spilled to the journal, which the next start stores;
stderr says ``N readings and M failures not stored: spilled to PATH (stored at the next
start)``. This holds for ``--once`` and at the end of a scheduled run.

It runs on uvloop where uvloop is installed (``kamstrup382.reader.new_event_loop``), the
in-process emulator too, with the open-file limit raised, the garbage collector's first
threshold raised and a 1 ms thread switch interval (``kamstrup382.collector.runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kamstrup382.cli.database import safe_url
from kamstrup382.cli.logs import setup_logging
from kamstrup382.cli.options import Number, check_duration
from kamstrup382.collector.config import (
    Config,
    MeterConfig,
    build_meter,
    load_config,
    parse_config,
    parse_duration,
)
from kamstrup382.errors import ConfigError, Kamstrup382Error, UsageError
from kamstrup382.reader import new_event_loop
from kamstrup382.systemd import Notifier

if TYPE_CHECKING:
    from kamstrup382.collector.collector import Collector
    from kamstrup382.collector.cycle import CycleResult

__all__ = ["collect"]

log = logging.getLogger("kamstrup382.collect")


@click.command("collect")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (meters, storage, outputs).",
)
@click.option("--once", is_flag=True, help="Read every meter once, then exit (0: all read).")
@click.option(
    "--emulator",
    "emulated",
    type=click.IntRange(min=1),
    default=None,
    help="Also start N emulated meters on 127.0.0.1 and read them.",
)
@click.option(
    "--kmp-emulator",
    "emulated_kmp",
    type=click.IntRange(min=1),
    default=None,
    help="Also start N emulated 382Jx3 meters (KMP, 9600 baud) on 127.0.0.1 and read them.",
)
@click.option(
    "--speed",
    type=Number(min=0.001),
    default=1.0,
    show_default=True,
    help="Line speed factor of the emulated meters (1 = true 300 baud).",
)
@click.option("--storage", "storage_url", help="Storage URL (overrides [storage] url).")
@click.option(
    "--interval",
    callback=check_duration,
    help="Interval for every meter, e.g. 15m, 30s (overrides the config).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
def collect(
    *,
    config_path: Path | None,
    once: bool,
    emulated: int | None,
    emulated_kmp: int | None,
    speed: float,
    storage_url: str | None,
    interval: str | None,
    verbose: int,
) -> int:
    """Read the configured meters on a wall-clock schedule and store every attempt."""
    setup_logging(verbose, base=0 if once else 1)
    if config_path is None and emulated is None and emulated_kmp is None:
        raise click.UsageError("give --config FILE, or --emulator N to try it without a meter")
    try:
        config = _config(config_path, storage_url, interval)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        return 2
    from kamstrup382.collector.runtime import (  # noqa: PLC0415 - only when collecting
        collector_runtime,
        raise_file_limit,
    )

    raise_file_limit()  # one socket per TCP meter
    try:
        with collector_runtime(), asyncio.Runner(loop_factory=new_event_loop) as runner:
            main = _main(
                config,
                once=once,
                emulated=emulated,
                emulated_kmp=emulated_kmp,
                speed=speed,
                reload=None if config_path is None else (config_path, storage_url, interval),
            )
            return runner.run(main)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        return 2
    except UsageError as exc:  # a missing extra, say: exit 2, as every usage error
        click.echo(f"error: {exc}", err=True)
        return 2
    except Kamstrup382Error as exc:
        click.echo(f"error: {exc}", err=True)
        return 1


def _config(path: Path | None, storage_url: str | None, interval: str | None) -> Config:
    data: dict[str, object] = {}
    if storage_url is not None:
        data["storage"] = {"url": storage_url}
    config = load_config(path) if path is not None else parse_config(data)
    if storage_url is not None and path is not None:
        url = parse_config({"storage": {"url": storage_url}}, env={}).storage.url
        config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, url=url))
    if interval is not None:
        every = parse_duration(interval, "--interval")
        config = dataclasses.replace(
            config,
            collector=dataclasses.replace(config.collector, interval=every),
            meters=tuple(dataclasses.replace(m, interval=every) for m in config.meters),
        )
    return config


@contextlib.asynccontextmanager
async def _emulated(
    config: Config, count: int | None, speed: float, kmp_count: int | None = None
) -> AsyncIterator[Config]:
    """The config with ``count`` emulated mode A meters and ``kmp_count`` emulated KMP meters
    added (served for the duration)."""
    from kamstrup382.emulator import Emulator  # noqa: PLC0415 - only for --emulator
    from kamstrup382.emulator.kmp_server import KmpEmulator  # noqa: PLC0415

    async with contextlib.AsyncExitStack() as stack:
        added: list[MeterConfig] = []
        taken = {m.name for m in config.meters}

        def add(prefix: str, ports: list[str], extra: dict[str, str]) -> None:
            for index, port in enumerate(ports):
                name = f"{prefix}-{index + 1}"
                while name in taken:
                    name += "x"
                taken.add(name)
                table = {"name": name, "port": port, **extra}
                added.append(build_meter(table, config.collector, len(added)))

        if count is not None:
            emu = Emulator(meters=count, transport="tcp", host="127.0.0.1", speed=speed)
            add("emulated", (await stack.enter_async_context(emu)).ports, {})
        if kmp_count is not None:
            kmp = KmpEmulator(kmp_count, host="127.0.0.1")
            add("emulated-kmp", (await stack.enter_async_context(kmp)).ports, {"protocol": "kmp"})
        yield dataclasses.replace(config, meters=config.meters + tuple(added))


async def _main(
    base: Config,
    *,
    once: bool,
    emulated: int | None,
    speed: float,
    reload: tuple[Path, str | None, str | None] | None = None,
    emulated_kmp: int | None = None,
) -> int:
    from kamstrup382.collector.collector import Collector  # noqa: PLC0415 - heavy imports
    from kamstrup382.outputs import build_outputs  # noqa: PLC0415
    from kamstrup382.storage.url import open_storage  # noqa: PLC0415

    async with _emulated(base, emulated, speed, emulated_kmp) as config:
        if not config.meters:
            raise ConfigError("meters", "no meters configured")
        outputs = build_outputs(
            config.sections,
            config.meters,
            dashboard_url=config.http.dashboard_url(),
            module=any(m.pulses is not None or m.tariff is not None for m in config.meters),
        )
        storage = await asyncio.to_thread(open_storage, config.storage.url)
        try:
            notifier = Notifier.from_environment()
            collector = Collector(
                config,
                storage,
                outputs,
                on_slot=lambda slot, result: notifier.status(_slot_status(slot, result)),
            )
            if once:
                async with collector:
                    result = await collector.run_once()
                for line in result.summary():
                    click.echo(line, err=True)
                click.echo(
                    f"{len(result.readings)} read, {len(result.failures)} failed, "
                    f"{len(result.missed)} missed, {len(result.elsewhere)} read elsewhere "
                    f"in {result.duration:.1f} s",
                    err=True,
                )
                if _unstored(collector):
                    return 3
                return 0 if result.ok else 1
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def stopping() -> None:
                notifier.stopping("stopping: in-flight readouts finish")
                stop.set()

            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stopping)
            reloads = _Reloads(collector, notifier, reload, config.meters[len(base.meters) :])
            loop.add_signal_handler(signal.SIGHUP, reloads.request)
            watchdog: asyncio.Task[None] | None = None
            try:
                await collector.start()
                what = f"collecting {len(config.meters)} meters into {safe_url(config.storage.url)}"
                log.info("%s as %s", what, collector.collector_id)
                notifier.ready(what)
                watchdog = asyncio.create_task(notifier.keep_watchdog())
                await collector.run(stop)
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                notifier.close()
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(signum)
                await reloads.close()
            return 3 if _unstored(collector) else 0
        finally:
            await asyncio.to_thread(storage.close)


class _Reloads:
    """SIGHUP: read the config file again and give its meters to the running collector, one
    reload at a time; a bad file is logged and the running configuration kept."""

    def __init__(
        self,
        collector: Collector,
        notifier: Notifier,
        source: tuple[Path, str | None, str | None] | None,
        emulated: tuple[MeterConfig, ...],
    ) -> None:
        self.collector = collector
        self.notifier = notifier
        self.source = source
        self.emulated = emulated  # --emulator's meters stay
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self) -> None:
        if self.source is None:
            log.warning("SIGHUP: no --config file to reload; nothing changed")
            return
        task = asyncio.get_running_loop().create_task(self._reload(self.source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self, source: tuple[Path, str | None, str | None]) -> None:
        async with self._lock:
            path = source[0]
            self.notifier.reloading(f"reloading {path}")
            try:
                config = await asyncio.to_thread(_config, *source)
                taken = {m.name for m in config.meters}
                for meter in self.emulated:
                    if meter.name in taken:
                        raise ConfigError("meters", f"{meter.name!r} is an emulated meter's name")
                config = dataclasses.replace(config, meters=config.meters + self.emulated)
                if not config.meters:
                    raise ConfigError("meters", "no meters configured")
            except ConfigError as exc:
                log.error("reload: config error: %s; the running configuration is kept", exc)
            else:
                change = await self.collector.reload(config)
                log.info("reload of %s: %s", path, change.summary())
                if change.restart:
                    log.warning(
                        "reload of %s: [%s] changed: applied only by a restart (the running "
                        "settings are kept)",
                        path,
                        "], [".join(change.restart),
                    )
            meters = len(self.collector.config.meters)
            self.notifier.ready(f"collecting {meters} meters (reloaded {path})")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _slot_status(slot: datetime, result: CycleResult) -> str:
    """One line for ``systemctl status``: what the last slot did."""
    return (
        f"slot {slot.isoformat(timespec='seconds')}: {len(result.readings)} read, "
        f"{len(result.failures)} failed, {len(result.missed)} missed in {result.duration:.1f} s"
    )


def _unstored(collector: Collector) -> bool:
    """Say what the storage refused and where it went (stderr); whether there was any."""
    if not (collector.unstored or collector.lost):
        return False
    if collector.unstored:
        readings = collector.unstored_readings
        click.echo(
            f"{readings} readings and {collector.unstored - readings} failures not stored: "
            f"spilled to {collector.spill.path} (stored at the next start)",
            err=True,
        )
    if collector.lost:
        click.echo(
            f"{collector.lost} results not stored and not spilled: lost (see the log)", err=True
        )
    return True
