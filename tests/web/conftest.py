"""Fixtures of the web tests: a real SQLite storage filled from protocol telegrams, the app,
an httpx client over ASGI, and the app served by a real uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from kamstrup382.storage.base import Storage
from kamstrup382.storage.url import open_storage
from kamstrup382.web import create_app
from tests.web.history import History, build_history
from tests.web.kmp_history import KmpHistory, build_kmp_history


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


@pytest.fixture(scope="module")
def mode_a() -> History:
    return build_history("house", slots=4 * 24, fail_every=0)


@pytest.fixture(scope="module")
def kmp() -> KmpHistory:
    return build_kmp_history("flat", slots=4 * 24)


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, mode_a: History, kmp: KmpHistory
) -> Iterator[Storage]:
    """A SQLite storage with a 685-382 (``house``) and a 382Jx3 (``flat``), stored as the
    collector stores them."""
    path = tmp_path_factory.mktemp("kmp") / "k382.sqlite"
    with open_storage(f"sqlite:///{path}") as storage:
        storage.record(mode_a.readings, mode_a.failures)
        storage.record(kmp.readings, kmp.failures)
        yield storage


#: The widths the browser tests look at: a desktop's and a phone's.
WIDTHS = {"desktop": 1400, "phone": 390}


@pytest.fixture(params=list(WIDTHS))
def sized(request: pytest.FixtureRequest, browser: Any) -> Iterator[Any]:
    """A page at each width (a phone's context also has touch and a device pixel ratio)."""
    width = WIDTHS[request.param]
    phone = request.param == "phone"
    context = browser.new_context(
        viewport={"width": width, "height": 844 if phone else 1000},
        device_scale_factor=3 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
    )
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def both_url(both: Storage) -> Iterator[str]:
    """The app over :func:`both`, served."""
    with LiveServer(create_app(both, refresh=0)) as live:
        yield live.url
