"""Fixtures of the web tests: a real SQLite storage filled from protocol telegrams, the app,
an httpx client over ASGI, and the app served by a real uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from kamstrup382.storage.base import Storage
from kamstrup382.storage.url import open_storage
from kamstrup382.web import create_app
from tests.web.history import History, build_history


@pytest.fixture(scope="session")
def history() -> History:
    return build_history("house", slots=4 * 24 * 5)


@pytest.fixture(scope="session")
def second_history() -> History:
    return build_history("garage", slots=4 * 24, fail_every=0)


def filled_storage(path: Path, *histories: History) -> Storage:
    storage = open_storage(f"sqlite:///{path}")
    for h in histories:
        storage.record(h.readings, h.failures)
    return storage


@pytest.fixture(scope="session")
def storage(
    tmp_path_factory: pytest.TempPathFactory, history: History, second_history: History
) -> Iterator[Storage]:
    """A read-only-by-convention storage shared by the API tests (the app never writes)."""
    storage = filled_storage(
        tmp_path_factory.mktemp("web") / "k382.sqlite", history, second_history
    )
    try:
        yield storage
    finally:
        storage.close()


@pytest.fixture
def db(tmp_path: Path, history: History) -> Path:
    """A SQLite file holding ``history``, for a server process of its own."""
    path = tmp_path / "readings.sqlite"
    filled_storage(path, history).close()
    return path


@pytest.fixture
async def client(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(storage)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client


class LiveServer:
    """An app served by uvicorn on 127.0.0.1 (any free port) in a thread."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> LiveServer:
        self.thread.start()
        ready = threading.Event()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            ready.wait(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def live_url(storage: Storage) -> Iterator[str]:
    with LiveServer(create_app(storage, refresh=0)) as live:
        yield live.url
