"""``k382 serve``: the web dashboard over the configured storage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from kamstrup382.cli.config_file import find_config
from kamstrup382.cli.database import open_existing, safe_url
from kamstrup382.cli.logs import setup_logging
from kamstrup382.collector.config import HttpConfig, load_config
from kamstrup382.errors import ConfigError, Kamstrup382Error, UsageError
from kamstrup382.settings import DEFAULT_HOST, DEFAULT_PORT, Listen
from kamstrup382.storage.url import default_storage_url
from kamstrup382.systemd import Notifier
from kamstrup382.web import DEFAULT_TITLE, create_app
from kamstrup382.web.server import (
    allowed_hosts,
    check_listen,
    parse_listen,
    run_server,
    stop_on_signals,
)
from kamstrup382.web.token import TOKEN_ENV, env_token, read_token_file

__all__ = ["serve"]


def _token(
    option: str | None, option_file: Path | None, http: HttpConfig, config_dir: Path
) -> str | None:
    """The token, from the first of: --token, --token-file, $K382_HTTP_TOKEN (or the older
    $K382_TOKEN), [http] token_file (relative to the config's directory), [http] token."""
    if option and option_file is not None:
        raise click.UsageError("give --token or --token-file, not both")
    if option:
        return option
    if option_file is not None:
        found = read_token_file(option_file, "--token-file")
    else:
        from_env = env_token()
        if from_env is not None:
            return from_env
        if http.token_file is None:
            return http.token
        found = read_token_file(config_dir / http.token_file, "http.token_file")
    if found.warning:
        click.echo(f"warning: {found.warning}", err=True)
    return found.token


async def _serve(storage_url: str, listen: Listen, token: str | None, http: HttpConfig) -> None:
    check_listen(listen, token)
    storage = await asyncio.to_thread(open_existing, storage_url)
    try:
        app = create_app(
            storage,
            token=token,
            title=http.title or DEFAULT_TITLE,
            refresh=http.refresh,
            allowed_hosts=allowed_hosts(listen, token),
        )
        stop = asyncio.Event()
        notifier = Notifier.from_environment()

        def ready(url: str) -> None:
            notifier.ready(f"dashboard on {url}/")
            click.echo(f"Dashboard on {url}/  (storage {safe_url(storage_url)}; Ctrl-C stops)")
            if token:
                click.echo(
                    "Every request needs the token: 'Authorization: Bearer <token>', "
                    f"or open {url}/?token=<token> once in a browser."
                )

        watchdog = asyncio.create_task(notifier.keep_watchdog())
        try:
            with stop_on_signals(stop):
                await run_server(app, listen, stop, on_ready=ready)
        finally:
            watchdog.cancel()
            notifier.stopping()
            notifier.close()
    finally:
        storage.close()


@click.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Collector config (TOML): its storage and [http] table.",
)
@click.option("--storage", "storage_url", help="Storage URL (overrides the config's).")
@click.option(
    "--http",
    "listen",
    metavar="HOST:PORT",
    help="Where to listen (default 127.0.0.1:8382; anything but loopback needs a token).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Require the token in this file (mode 600), or in ${TOKEN_ENV}: "
    "'Authorization: Bearer TOKEN', or ?token= once in a browser.",
)
@click.option(
    "--token",
    help=f"The token itself (visible in ps: prefer ${TOKEN_ENV} or --token-file).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def serve(
    *,
    config_path: Path | None,
    storage_url: str | None,
    listen: str | None,
    token_file: Path | None,
    token: str | None,
    verbose: int,
) -> int:
    """Serve the dashboard and the JSON API over the storage (read only).

    Binds 127.0.0.1:8382 by default. Listening on any other address refuses to start without a
    token: give it in $K382_HTTP_TOKEN or a file (--token-file, or token_file in the [http]
    table), where ps does not show it. With a token every request must carry it: scripts
    send 'Authorization: Bearer TOKEN'; in a browser open http://HOST:PORT/?token=TOKEN once,
    the page then keeps an HttpOnly cookie (derived from the token) and drops the token from
    the address. Serve it over TLS (a reverse proxy) when it leaves your LAN.

    \b
    The config's [http] table may set: listen = "HOST:PORT", token_file
    (or token), title, refresh (seconds between page updates, 0 = none).
    Options win over it.
    The API is described at /api/openapi.json; every series has ?format=csv.
    """
    setup_logging(verbose)
    try:
        http = HttpConfig()
        config_dir = Path.cwd()
        named = config_path is not None or storage_url is not None
        try:
            if storage_url is None or config_path is not None:
                config_path = find_config(config_path)
            cfg = load_config(config_path) if config_path is not None else None
        except ConfigError as exc:  # the file is wrong: exit 2, as for every command
            click.echo(f"config error: {exc}", err=True)
            return 2
        if cfg is not None and config_path is not None:
            http = cfg.http
            storage_url = storage_url or cfg.storage.url
            config_dir = config_path.parent
        if storage_url is None:
            storage_url = default_storage_url()
        if not named:
            source = f"the config {config_path}" if config_path else "the default"
            click.echo(f"database: {safe_url(storage_url)} ({source})", err=True)
        where = (
            parse_listen(listen) if listen else http.listen or Listen(DEFAULT_HOST, DEFAULT_PORT)
        )
        token = _token(token, token_file, http, config_dir)
        asyncio.run(_serve(storage_url, where, token, http))
    except (
        UsageError
    ) as exc:  # a busy port, no token, a missing extra: exit 2, as every usage error
        click.echo(f"error: {exc}", err=True)
        return 2
    except Kamstrup382Error as exc:
        raise click.ClickException(str(exc)) from exc
    return 0
