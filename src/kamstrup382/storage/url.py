"""Open a storage from its URL.

- ``sqlite:///PATH``: a SQLite file. Everything after ``sqlite:///`` is the path, so a relative
  path is ``sqlite:///data/k382.sqlite`` (relative to the working directory) and an absolute
  one has four slashes: ``sqlite:////var/lib/k382/readings.sqlite``. The query
  ``?synchronous=normal`` lowers the default ``full`` (see :mod:`.sqlite`);
  ``?max_page_count=N`` caps the database at N pages (of 4 KiB): a write that would grow it
  further fails as on a full disk, and the collector spills what it could not store.
- ``postgresql://user:password@host:port/dbname`` (or ``postgres://``): a PostgreSQL database,
  any libpq connection URL.

Without a URL the default is a SQLite file in the user's data directory
(:func:`default_storage_url`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qsl

import platformdirs

from kamstrup382.errors import ConfigError
from kamstrup382.extras import require
from kamstrup382.storage.base import Storage

__all__ = [
    "check_storage_url",
    "default_state_dir",
    "default_storage_url",
    "open_storage",
    "spill_path",
    "sqlite_path",
]

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")
#: SQLite's own ceiling of ``max_page_count``.
_MAX_PAGES = 4294967294


def default_storage_url() -> str:
    """``sqlite:///`` + ``<user data dir>/kamstrup382/readings.sqlite`` (absolute)."""
    path = Path(platformdirs.user_data_dir("kamstrup382")) / "readings.sqlite"
    return f"{_SQLITE}{path}"


def default_state_dir() -> Path:
    """``<user state dir>/kamstrup382``: where a collector on PostgreSQL keeps its spill journal
    unless ``[storage] spill_dir`` says otherwise."""
    return Path(platformdirs.user_state_dir("kamstrup382"))


def spill_path(url: str, spill_dir: Path | None = None) -> Path:
    """The spill journal of the storage at ``url`` (see :mod:`kamstrup382.collector.spill`).

    SQLite: ``<database>.spill.jsonl`` beside the database, or that name in ``spill_dir``.
    PostgreSQL: ``postgresql-<hash>.spill.jsonl`` in ``spill_dir`` (default:
    :func:`default_state_dir`), the hash of the URL without its password, so that the journals
    of two databases never mix.
    """
    if url.startswith(_SQLITE):
        path, _ = sqlite_path(url)
        name = f"{path.name}.spill.jsonl"
        return (spill_dir / name) if spill_dir is not None else path.with_name(name)
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    safe = f"{scheme}{sep}{creds.partition(':')[0]}{at}{host}"
    digest = hashlib.sha256(safe.encode("utf-8")).hexdigest()[:16]
    return (spill_dir or default_state_dir()) / f"postgresql-{digest}.spill.jsonl"


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
    unknown = set(options) - {"synchronous", "max_page_count"}
    if unknown:
        raise ConfigError(key, f"unknown sqlite option(s): {', '.join(sorted(unknown))}")
    if options.get("synchronous", "full").lower() not in ("full", "normal", "extra"):
        raise ConfigError(key, "synchronous must be full, normal or extra")
    pages = options.get("max_page_count", "1")
    if not (pages.isascii() and pages.isdigit() and 1 <= int(pages) <= _MAX_PAGES):
        raise ConfigError(key, f"max_page_count must be a whole number 1-{_MAX_PAGES}")
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
        pages = options.get("max_page_count")
        storage = SqliteStorage(
            path,
            synchronous=options.get("synchronous", "full"),
            max_page_count=int(pages) if pages is not None else None,
            url=url,
        )
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
