"""Opening a storage from its URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kamstrup382.errors import ConfigError, StorageError
from kamstrup382.storage.sqlite import SqliteStorage
from kamstrup382.storage.url import default_storage_url, open_storage, spill_path, sqlite_path
from tests.fixtures.postgres import PostgresServer, find_pg_bin


def test_sqlite_paths_absolute_and_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sqlite_path("sqlite:////var/lib/k382/r.sqlite")[0] == Path("/var/lib/k382/r.sqlite")
    assert sqlite_path("sqlite:///data/r.sqlite")[0] == Path("data/r.sqlite")
    assert sqlite_path("sqlite:///r.sqlite?synchronous=normal") == (
        Path("r.sqlite"),
        {"synchronous": "normal"},
    )
    monkeypatch.chdir(tmp_path)
    with open_storage("sqlite:///sub/dir/r.sqlite") as storage:
        assert isinstance(storage, SqliteStorage)
        assert storage.url == "sqlite:///sub/dir/r.sqlite"
    assert (tmp_path / "sub" / "dir" / "r.sqlite").is_file()
    with open_storage("sqlite:///n.sqlite?synchronous=normal") as storage:
        assert isinstance(storage, SqliteStorage)
        assert storage.synchronous == "NORMAL"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://localhost/db", "unsupported storage URL scheme 'mysql'"),
        ("readings.sqlite", "unsupported storage URL scheme"),
        ("sqlite:///", "lacks a path"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///x.sqlite?journal=off", "unknown sqlite option"),
        ("sqlite:///x.sqlite?synchronous=off", "synchronous must be"),
        ("sqlite:///x.sqlite?max_page_count=0", "max_page_count must be"),
        ("sqlite:///x.sqlite?max_page_count=1e9", "max_page_count must be"),
        ("sqlite:///x.sqlite?max_page_count=٣", "max_page_count must be"),
    ],
)
def test_bad_urls_name_the_key(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        open_storage(url)
    assert info.value.key == "storage.url"


def test_the_spill_journal_is_beside_a_sqlite_file_and_in_the_state_dir_for_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert spill_path("sqlite:////var/lib/k382/r.sqlite?synchronous=normal") == Path(
        "/var/lib/k382/r.sqlite.spill.jsonl"
    )
    assert spill_path("sqlite:///r.sqlite", tmp_path) == tmp_path / "r.sqlite.spill.jsonl"
    one = spill_path("postgresql://k382:secret@db.example/k382")
    assert one.parent == tmp_path / "state" / "kamstrup382"
    assert one.name.startswith("postgresql-") and "secret" not in str(one)
    assert spill_path("postgresql://k382:other@db.example/k382") == one  # the password aside
    assert spill_path("postgresql://k382@db.example/other") != one  # another database
    assert spill_path("postgresql://k382@db.example/k382", tmp_path).parent == tmp_path


def test_default_is_a_file_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = default_storage_url()
    assert url == f"sqlite:///{tmp_path / 'data' / 'kamstrup382' / 'readings.sqlite'}"
    assert sqlite_path(url)[0].is_absolute()
    with open_storage() as storage:
        assert storage.url == url
    assert (tmp_path / "data" / "kamstrup382" / "readings.sqlite").is_file()


def test_an_unwritable_place_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot"):
        open_storage(f"sqlite:///{blocker / 'x.sqlite'}")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(StorageError):
        open_storage(f"sqlite:///{garbage}")


@pytest.mark.postgres
def test_an_unreachable_postgres_is_a_storage_error() -> None:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries missing")
    with PostgresServer(fsync=False) as server:
        url = server.url
    with pytest.raises(StorageError, match="cannot connect") as info:  # the server is gone
        open_storage(url)
    assert info.value.__cause__ is not None
    with pytest.raises(StorageError):
        open_storage("postgres://postgres@127.0.0.1:1/none")
