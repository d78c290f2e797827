"""The database a reading command (``status``, ``export``, ``serve``) uses: found, never made.

``--storage URL`` wins; else the ``[storage] url`` of the config file (``--config``, or the one
:func:`~kamstrup382.cli.config_file.find_config` finds); else the default SQLite file. These
commands only read: a SQLite file that is not there is an error ("no database at PATH"), not
a new empty database that would hide a wrong path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kamstrup382.cli.config_file import find_config
from kamstrup382.errors import StorageError
from kamstrup382.storage import Storage
from kamstrup382.storage.url import default_storage_url, open_storage, sqlite_path

if TYPE_CHECKING:
    from kamstrup382.collector.config import Config

__all__ = [
    "ChosenDatabase",
    "choose_database",
    "open_chosen",
    "open_existing",
    "safe_url",
    "say_which",
]


@dataclass(frozen=True, slots=True)
class ChosenDatabase:
    """The storage URL a reading command uses, where it came from (for the user: ``the config
    k382.toml``), and the config file read, if one was (its other tables: ``[mqtt]``...)."""

    url: str
    source: str
    config: Config | None = None


def choose_database(config_path: Path | None, storage_url: str | None) -> ChosenDatabase:
    """``--storage`` wins, else the config's ``[storage] url``, else the default. The config
    file (``--config`` or the one found) is read unless ``--storage`` alone was given."""
    config: Config | None = None
    found = None
    if storage_url is None or config_path is not None:
        found = find_config(config_path)  # --config, $K382_CONFIG, ./k382.toml, ...
        if found is not None:
            from kamstrup382.collector.config import load_config  # noqa: PLC0415 - on use

            config = load_config(found)
    if storage_url is not None:
        return ChosenDatabase(storage_url, "--storage", config)
    if config is not None:
        return ChosenDatabase(config.storage.url, f"the config {found}", config)
    return ChosenDatabase(default_storage_url(), "the default: no config file found")


def say_which(chosen: ChosenDatabase, config_path: Path | None, storage_url: str | None) -> None:
    """Name the database on stderr when neither ``--config`` nor ``--storage`` named it."""
    if config_path is None and storage_url is None:
        click.echo(f"database: {safe_url(chosen.url)} ({chosen.source})", err=True)


def open_existing(url: str) -> Storage:
    """The storage at ``url``; :class:`StorageError` if it is a SQLite file that is not there."""
    if url.startswith("sqlite:"):
        path, _ = sqlite_path(url)
        if not path.is_file():
            raise StorageError(
                f"no database at {path} (k382 collect creates it; or name another with "
                "--storage URL or --config FILE)"
            )
    return open_storage(url)


def open_chosen(config_path: Path | None, storage_url: str | None) -> Storage:
    """:func:`choose_database`, opened with :func:`open_existing`; says which database it is
    (on stderr) when neither ``--config`` nor ``--storage`` named it."""
    chosen = choose_database(config_path, storage_url)
    say_which(chosen, config_path, storage_url)
    return open_existing(chosen.url)


def safe_url(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
    return url
