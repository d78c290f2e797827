"""Every storage test runs against both backends: a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'k382.sqlite'}"
    url: str = request.getfixturevalue("postgres_db_url")
    return url


@pytest.fixture
def storage(storage_url: str) -> Iterator[Storage]:
    with open_storage(storage_url) as storage:
        yield storage
