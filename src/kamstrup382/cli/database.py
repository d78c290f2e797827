"""The database a reading command (``status``, ``export``, ``serve``) uses: found, never made.

``--storage URL`` wins; else the ``[storage] url`` of the config file (``--config``, or the one
:func:`~kamstrup382.cli.config_file.find_config` finds); else the default SQLite file. These
commands only read: a SQLite file that is not there is an error ("no database at PATH"), not
a new empty database that would hide a wrong path.
"""

from __future__ import annotations

from pathlib import Path

import click

from kamstrup382.cli.config_file import find_config
from kamstrup382.errors import StorageError
from kamstrup382.storage import Storage
from kamstrup382.storage.url import default_storage_url, open_storage, sqlite_path

__all__ = ["chosen_storage", "open_chosen", "open_existing", "safe_url"]


def chosen_storage(config_path: Path | None, storage_url: str | None) -> tuple[str, str]:
    """The storage URL to use and where it came from (for the user: ``from k382.toml``)."""
    if storage_url is not None:
        return storage_url, "--storage"
    found = find_config(config_path)
    if found is not None:
        from kamstrup382.collector.config import load_config  # noqa: PLC0415 - loaded on use

        return load_config(found).storage.url, f"the config {found}"
    return default_storage_url(), "the default: no config file found"


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
    """:func:`chosen_storage`, opened with :func:`open_existing`; says which database it is
    (on stderr) when neither ``--config`` nor ``--storage`` named it."""
    url, source = chosen_storage(config_path, storage_url)
    if config_path is None and storage_url is None:
        click.echo(f"database: {safe_url(url)} ({source})", err=True)
    return open_existing(url)


def safe_url(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
    return url
