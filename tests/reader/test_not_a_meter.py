"""Something that answers but is not a meter is named as such."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from kamstrup382.errors import FramingError
from kamstrup382.reader import AsyncReader, Reader
from kamstrup382.reader.policy import RetryPolicy

HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nBad Request"
)


@pytest.fixture
def web_server() -> Iterator[int]:
    """A loopback server answering every connection as an HTTP server answers '/?!'."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(64)
                    conn.sendall(HTTP_ANSWER)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("line", ["8N1", "7E1"])
def test_a_web_server_is_named(web_server: int, line: str) -> None:
    with (
        Reader(
            f"socket://127.0.0.1:{web_server}", line=line, retry=RetryPolicy(retries=0)
        ) as reader,
        pytest.raises(FramingError, match="answered like an HTTP server"),
    ):
        reader.read()


async def test_a_web_server_is_named_by_the_async_reader(web_server: int) -> None:
    async with AsyncReader(
        f"socket://127.0.0.1:{web_server}", retry=RetryPolicy(retries=0)
    ) as reader:
        with pytest.raises(FramingError, match="answered like an HTTP server"):
            await asyncio.wait_for(reader.read(), 30)
