"""The server's limits against real sockets: ``run_server`` (uvicorn with the guarded h11
protocol) on a loopback port in a thread, and clients that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from kamstrup382.errors import UsageError
from kamstrup382.web.connections import ACCEPT_TURNS, RESERVED_FILES, Limits, raise_open_files
from kamstrup382.web.server import Listen, run_server

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    body = b"hello"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def serving(app: object, limits: Limits) -> Iterator[tuple[str, int]]:
    """``app`` served by :func:`run_server` on 127.0.0.1 (a free port) until the block ends."""
    started = threading.Event()
    address: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []
    stops: list[asyncio.Event] = []
    errors: list[BaseException] = []

    async def main() -> None:
        stop = asyncio.Event()
        loops.append(asyncio.get_running_loop())
        stops.append(stop)

        def ready(url: str) -> None:
            address.append(url)
            started.set()

        await run_server(app, Listen("127.0.0.1", 0), stop, on_ready=ready, limits=limits)  # type: ignore[arg-type]

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="dashboard", daemon=True)
    thread.start()
    assert started.wait(10), "the server did not start"
    assert not errors, errors
    port = int(address[0].rsplit(":", 1)[1])
    try:
        yield "127.0.0.1", port
    finally:
        loops[0].call_soon_threadsafe(stops[0].set)
        thread.join(15)
        assert not thread.is_alive(), "the server did not stop"
        assert not errors, errors


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    sock.setblocking(False)
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (monotonic seconds)."""
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received, time.monotonic()
        if not chunk:
            return received, time.monotonic()
        received += chunk
    raise AssertionError(f"still open after {timeout} s; received {len(received)} bytes")


def read_hello(sock: socket.socket) -> bytes:
    """The whole response of :func:`hello` (it may come in more than one piece)."""
    received = b""
    for _ in range(50):
        if received.endswith(b"hello"):
            return received
        select.select([sock], [], [], 0.1)
        with contextlib.suppress(BlockingIOError):
            received += sock.recv(65536)
    raise AssertionError(f"no whole response: {received!r}")


def closed_by_server(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def test_a_silent_connection_is_closed_after_the_header_timeout() -> None:
    with serving(hello, Limits(header_timeout=0.5)) as address:
        start = time.monotonic()
        with connect(address) as sock:
            received, closed = read_until_closed(sock, timeout=5)
        assert received == b""  # it asked for nothing: no answer, just closed
        assert 0.4 <= closed - start <= 2.5


def test_headers_sent_a_byte_at_a_time_do_not_extend_the_timeout() -> None:
    with serving(hello, Limits(header_timeout=0.5)) as address, connect(address) as sock:
        start = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed_at = None
        for _ in range(200):  # at most 10 s of a byte every 50 ms
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                received, closed_at = read_until_closed(sock, timeout=5)
                break
            sock.send(b"a")
        assert closed_at is not None, "the server kept a dribbling client for 10 s"
        assert received.startswith(b"HTTP/1.1 408 ")
        assert 0.4 <= closed_at - start <= 2.5


def test_the_next_request_on_a_kept_alive_connection_has_the_same_timeout() -> None:
    limits = Limits(header_timeout=0.5, keep_alive=60)
    with serving(hello, limits) as address, connect(address) as sock:
        sock.sendall(REQUEST)
        assert read_hello(sock).startswith(b"HTTP/1.1 200 ")
        start = time.monotonic()
        closed_at = None
        for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 150:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                received, closed_at = read_until_closed(sock, timeout=5)
                break
            sock.send(bytes([byte]))
        assert closed_at is not None, "a dribbled second request was never cut off"
        assert received.startswith(b"HTTP/1.1 408 ")
        assert closed_at - start <= 2.5


def test_a_normal_client_is_served_at_the_limit_and_the_oldest_waiting_makes_room() -> None:
    limits = Limits(header_timeout=60, max_connections=20)
    with serving(hello, limits) as address:
        idle = [connect(address) for _ in range(20)]
        try:
            for sock in idle:
                sock.send(b"GET / HTTP/1.1\r\n")  # and nothing more
            time.sleep(0.2)
            assert not any(closed_by_server(s) for s in idle)
            start = time.monotonic()
            response = httpx.get(f"http://{address[0]}:{address[1]}/", timeout=5)
            assert response.status_code == 200
            assert response.text == "hello"
            assert time.monotonic() - start < 2
            time.sleep(0.2)
            closed = [closed_by_server(s) for s in idle]
            assert closed[0], "the oldest waiting connection should have made room"
            assert sum(closed) <= 2  # the client's connection needed one slot
        finally:
            for sock in idle:
                sock.close()


def test_when_every_connection_is_being_answered_a_newcomer_gets_503() -> None:
    entered = threading.Semaphore(0)
    release = asyncio.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        loops[:] = [asyncio.get_running_loop()]
        entered.release()
        await asyncio.wait_for(release.wait(), 20)
        await hello(scope, receive, send)

    with serving(slow, Limits(max_connections=3)) as address:
        busy = [connect(address) for _ in range(3)]
        try:
            for sock in busy:
                sock.sendall(REQUEST)
            for _ in range(3):
                assert entered.acquire(timeout=5)
            with connect(address) as newcomer:
                received, _ = read_until_closed(newcomer, timeout=5)
            assert received.startswith(b"HTTP/1.1 503 ")
            assert b"retry-after: 1" in received
            loops[0].call_soon_threadsafe(release.set)
            for sock in busy:  # those being answered are answered
                assert read_hello(sock).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in busy:
                sock.close()


BIG = 64 * 1024 * 1024


async def big(scope: Scope, receive: Receive, send: Send) -> None:
    chunk = b"x" * (1024 * 1024)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(BIG).encode())],
        }
    )
    for _ in range(BIG // len(chunk)):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def test_a_client_that_stops_reading_is_disconnected() -> None:
    with serving(big, Limits(send_timeout=0.5)) as address:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            sock.settimeout(5)
            sock.connect(address)
            sock.sendall(REQUEST)
            time.sleep(2.0)  # reads nothing: the server's buffer fills and stays full
            sock.setblocking(False)
            received, _ = read_until_closed(sock, timeout=10)
        assert received.startswith(b"HTTP/1.1 200 ")
        assert len(received) < BIG // 2


def test_headers_beyond_the_size_limit_are_refused() -> None:
    with serving(hello, Limits(max_header_bytes=4096)) as address, connect(address) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8192)
        received, _ = read_until_closed(sock, timeout=5)
        assert received.startswith(b"HTTP/1.1 400 ")


def test_the_connection_limit_stays_below_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    fitted = Limits(max_connections=10_000_000).within_open_files()
    assert fitted.max_connections <= max(1, soft - RESERVED_FILES - ACCEPT_TURNS * fitted.backlog)
    assert Limits(max_connections=5).within_open_files().max_connections == 5
    fitted = Limits(backlog=50).within_open_files(512)
    assert fitted.max_connections == 512 - RESERVED_FILES - ACCEPT_TURNS * 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"header_timeout": 0},
        {"send_timeout": -1},
        {"keep_alive": 0},
        {"header_timeout": float("inf")},
        {"max_connections": 0},
        {"max_header_bytes": 10},
        {"backlog": 0},
    ],
)
def test_limits_check_themselves(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError, match=next(iter(kwargs))):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_the_soft_open_file_limit_is_raised_as_far_as_the_limits_need() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = Limits(max_connections=100, backlog=10)
    assert limits.open_files == 100 + RESERVED_FILES + ACCEPT_TURNS * 10
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files - 50, hard))
        raise_open_files(limits)
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        expected = (
            limits.open_files if hard == resource.RLIM_INFINITY else min(hard, limits.open_files)
        )
        assert raised == expected
        assert limits.within_open_files() == limits
        raise_open_files(Limits(max_connections=1, backlog=1))  # never lowers it
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
