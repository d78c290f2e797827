"""``k382 config``: where the configuration is, a new annotated one, and a check of one.

k382 config path                 # which file commands use, and where they look
k382 config init [FILE]          # write an annotated k382.toml (default ./k382.toml)
k382 config check [FILE]         # check every key; exit 0 when it is good, 2 when not
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import click

from kamstrup382.cli.config_file import CONFIG_ENV, FILE_NAME, candidates, find_config
from kamstrup382.cli.database import safe_url
from kamstrup382.errors import ConfigError

__all__ = ["config"]


@click.group("config")
def config() -> None:
    """Find, write and check the configuration file."""


@config.command("path")
def path() -> int:
    """Print the config file commands use without --config, and the places looked at."""
    try:
        found = find_config(None)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        return 2
    named = os.environ.get(CONFIG_ENV)
    click.echo(str(found) if found else "no config file found")
    click.echo(f"looked at: ${CONFIG_ENV}{f' ({named})' if named else ' (not set)'}", err=True)
    for place in candidates():
        click.echo(f"           {place}{' (found)' if place == found else ''}", err=True)
    return 0 if found else 1


@config.command("init")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), default=FILE_NAME)
@click.option("--port", default="/dev/serial0", show_default=True, help="The first meter's port.")
@click.option("--name", default="meter-1", show_default=True, help="The first meter's name.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init(file: Path, port: str, name: str, force: bool) -> int:
    """Write an annotated config file (readable by its owner only)."""
    template = resources.files("kamstrup382").joinpath("data/k382.toml.template").read_text()
    # the values go in as TOML strings, whatever they hold
    text = template.replace("{name}", json.dumps(name)[1:-1]).replace(
        "{port}", json.dumps(port)[1:-1]
    )
    from kamstrup382.collector.config import load_config  # noqa: PLC0415 - only here

    if file.exists() and not force:
        click.echo(f"error: {file} exists (--force replaces it)", err=True)
        return 2
    # written beside the target, checked, then renamed over it: a refused value leaves any
    # existing file as it was
    try:
        fd, name = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)  # mode 0600
    except OSError as exc:
        click.echo(f"error: cannot write {file}: {exc.strerror}", err=True)
        return 2
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        load_config(temporary, env={})
        os.replace(temporary, file)
    except ConfigError as exc:  # a port or name the checks refuse
        click.echo(
            f"config error: {exc.key.replace(str(temporary), str(file))}: {exc.problem}", err=True
        )
        return 2
    except OSError as exc:
        click.echo(f"error: cannot write {file}: {exc.strerror}", err=True)
        return 2
    finally:
        temporary.unlink(missing_ok=True)
    click.echo(f"wrote {file}; check it with: k382 config check {file}", err=True)
    return 0


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def check(file: Path | None) -> int:
    """Check a config file (default: the one commands use) and summarise it."""
    from kamstrup382.collector.config import load_config  # noqa: PLC0415 - only here

    try:
        found = find_config(file)
        if found is None:
            click.echo("config error: no config file found (see: k382 config path)", err=True)
            return 2
        loaded = load_config(found)
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        return 2
    outputs = ", ".join(loaded.sections) or "none"
    click.echo(
        f"{found}: good: {len(loaded.meters)} meter(s), storage {safe_url(loaded.storage.url)}, "
        f"outputs: {outputs}"
    )
    if not loaded.meters:
        click.echo("note: no [[meters]]: k382 collect needs at least one", err=True)
    return 0
