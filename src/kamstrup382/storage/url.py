"""Open a storage from its URL.

- ``sqlite:///PATH``: a SQLite file. Everything after ``sqlite:///`` is the path, so a relative
  path is ``sqlite:///data/k382.sqlite`` (relative to the working directory) and an absolute
  one has four slashes: ``sqlite:////var/lib/k382/readings.sqlite``. The query
  ``?synchronous=normal`` lowers the default ``full`` (see :mod:`.sqlite`).
- ``postgresql://user:password@host:port/dbname`` (or ``postgres://``): a PostgreSQL database,
  any libpq connection URL.

Without a URL the default is a SQLite file in the user's data directory
(:func:`default_storage_url`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

import platformdirs

from kamstrup382.errors import ConfigError
from kamstrup382.extras import require
from kamstrup382.storage.base import Storage

__all__ = ["check_storage_url", "default_storage_url", "open_storage", "sqlite_path"]

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def default_storage_url() -> str:
    """``sqlite:///`` + ``<user data dir>/kamstrup382/readings.sqlite`` (absolute)."""
    path = Path(platformdirs.user_data_dir("kamstrup382")) / "readings.sqlite"
    return f"{_SQLITE}{path}"


def sqlite_path(url: str, key: str = "storage.url") -> tuple[Path, dict[str, str]]:
    """The file and the query options of a ``sqlite:///`` URL (errors name ``key``)."""
    rest = url[len(_SQLITE) :]
    path, _, query = rest.partition("?")
    if not path:
        raise ConfigError(key, "sqlite URL lacks a path: sqlite:///path/to/file.sqlite")
    if path == ":memory:":
        raise ConfigError(key, "an in-memory SQLite database is not supported: give a file path")
    try:
        options = dict(parse_qsl(query, strict_parsing=bool(query)))
    except ValueError as exc:
        raise ConfigError(key, f"bad query {query!r}: {exc}") from exc
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise ConfigError(key, f"unknown sqlite option(s): {', '.join(sorted(unknown))}")
    if options.get("synchronous", "full").lower() not in ("full", "normal", "extra"):
        raise ConfigError(key, "synchronous must be full, normal or extra")
    return Path(path), options


def check_storage_url(url: str, key: str = "storage.url") -> str:
    """``url`` if :func:`open_storage` can open it; :class:`ConfigError` naming ``key`` if not
    (the whole check of a URL's form, made before anything is opened)."""
    if url.startswith(_SQLITE):
        sqlite_path(url, key)
    elif not url.startswith(_POSTGRES):
        scheme = url.partition(":")[0] if ":" in url else url
        raise ConfigError(
            key,
            f"unsupported storage URL scheme {scheme!r}: use sqlite:///PATH or postgresql://...",
        )
    return url


def open_storage(url: str | None = None, *, migrate: bool = True) -> Storage:
    """The storage at ``url`` (default: :func:`default_storage_url`), migrated to the latest
    schema unless ``migrate=False``.

    :class:`~kamstrup382.errors.ConfigError` (key ``storage.url``) for a URL that cannot be
    used; :class:`~kamstrup382.errors.StorageError` when the database cannot be opened;
    :class:`~kamstrup382.extras.MissingExtra` for PostgreSQL without the ``postgres`` extra.
    """
    url = check_storage_url(default_storage_url() if url is None else url)
    storage: Storage
    if url.startswith(_SQLITE):
        from kamstrup382.storage.sqlite import SqliteStorage  # noqa: PLC0415 - loaded on use

        path, options = sqlite_path(url)
        storage = SqliteStorage(path, synchronous=options.get("synchronous", "full"), url=url)
    else:
        require("postgres")
        from kamstrup382.storage.postgres import PostgresStorage  # noqa: PLC0415 - loaded on use

        storage = PostgresStorage(url)
    if migrate:
        try:
            storage.migrate()
        except BaseException:
            storage.close()
            raise
    return storage
