"""``k382 serve`` (a real process, its default limits) against hostile clients on loopback:
thousands of connections that dribble their headers, and requests crafted for a redirect
that leaves the site."""

from __future__ import annotations

import resource
import selectors
import socket
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from kamstrup382.web.connections import Limits
from tests.web.serve_process import start_serve, stop

#: A normal client must be answered within this many seconds while the slow ones hold on
#: (seen: 0.1-0.8 s, and up to 2 s for the first request, queued behind the 3,000 connections,
#: on 2 busy cores).
BOUND = 5.0


def slow_clients_wanted() -> int:
    """3,000, or as many as this process's open-file limit allows beside the test's own."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(3000, soft - 200)


class Dribblers:
    """Many connections that send a request's headers a byte at a time and never finish."""

    HEAD = b"GET /api/meters HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.open: set[socket.socket] = set()
        self.closed_by_server = 0
        for _ in range(count):
            sock = socket.create_connection(address, timeout=10)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.open.add(sock)
            self._send(sock, self.HEAD)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)
        except OSError:  # reset by the server
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        if sock in self.open:
            self.open.discard(sock)
            self.selector.unregister(sock)
            sock.close()
            self.closed_by_server += 1

    def dribble(self) -> None:
        """One more byte on every open connection; count those the server closed."""
        for key, _ in self.selector.select(timeout=0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data or data.startswith(b"HTTP/1.1 408 "):
                self._drop(sock)
        for sock in list(self.open):
            self._send(sock, b"a")

    def close(self) -> None:
        for sock in self.open:
            sock.close()
        self.selector.close()


def served_within(url: str, bound: float) -> float:
    start = time.monotonic()
    response = httpx.get(f"{url}/api/meters", timeout=bound)
    elapsed = time.monotonic() - start
    assert response.status_code == 200
    assert response.json()["meters"][0]["name"] == "house"
    return elapsed


@pytest.mark.slow
@pytest.mark.parametrize("open_files", [None, 512], ids=["files-inherited", "files-512"])
def test_thousands_of_slow_clients_do_not_make_it_unreachable(
    db: Path, open_files: int | None
) -> None:
    """3,000 clients dribbling headers against ``k382 serve`` with its default limits, with
    this process's open-file limit and with one far below the number of clients."""
    limits = Limits().within_open_files(open_files)  # what k382 serve runs with
    count = slow_clients_wanted()
    assert count > limits.max_connections, "too few files to outnumber the connection limit"
    process, url = start_serve(
        "--storage", f"sqlite:///{db}", "--http", "127.0.0.1:0", open_files=open_files
    )
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    dribblers = Dribblers((parts.hostname, parts.port), count)
    try:
        opened = time.monotonic()
        latencies = []
        for _ in range(8):  # 4 s of a byte every 0.5 s from every slow client
            dribblers.dribble()
            latencies.append(served_within(url, BOUND))
            time.sleep(0.5)
        # the oldest slow clients made room for the newer: the server holds at most its limit
        assert len(dribblers.open) <= limits.max_connections
        assert dribblers.closed_by_server >= count - limits.max_connections
        # and none outlives the header timeout, however steadily it dribbles
        deadline = opened + limits.header_timeout + 5
        while dribblers.open and time.monotonic() < deadline:
            dribblers.dribble()
            latencies.append(served_within(url, BOUND))
            time.sleep(0.5)
        assert not dribblers.open, f"{len(dribblers.open)} slow clients outlived the timeout"
        assert max(latencies) < BOUND
    finally:
        dribblers.close()
        assert stop(process) == 0


TOKEN = "t0ken-for-redirects"

#: Request targets that a naive redirect would send to evil.example.
OFF_SITE = (
    f"//evil.example/?token={TOKEN}",
    f"//evil.example/meters/house?token={TOKEN}",
    f"/\\evil.example/?token={TOKEN}",
    f"/\\\\evil.example/?token={TOKEN}",
    f"/%2F%2Fevil.example/?token={TOKEN}",
    f"/%2fevil.example?token={TOKEN}",
    f"/%5Cevil.example/?token={TOKEN}",
    f"/%5C%5Cevil.example/?token={TOKEN}",
    f"/%09/evil.example/?token={TOKEN}",
    "//evil.example/",
    "//evil.example/api/meters/",
    "/api/meters/",
    "/meters/house/",
)


def raw_request(address: tuple[str, int], target: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1")
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        received = b""
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def location_of(response: bytes) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "location":
            return value.strip()
    return None


@pytest.mark.parametrize("host", ["127.0.0.1", "evil.example"])
def test_no_redirect_leaves_the_site(db: Path, tmp_path: Path, host: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    process, url = start_serve(
        "--storage", f"sqlite:///{db}", "--http", "127.0.0.1:0", "--token-file", str(token_file)
    )
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    address = (parts.hostname, parts.port)
    try:
        redirects = 0
        for target in OFF_SITE:
            headers = {"Host": f"{host}:{parts.port}"}
            if "token=" not in target:
                headers["Authorization"] = f"Bearer {TOKEN}"
            response = raw_request(address, target, headers)
            assert response.startswith(b"HTTP/1.1 "), (target, response[:200])
            location = location_of(response)
            if location is None:
                continue
            redirects += 1
            assert location.startswith("/"), (target, location)
            assert not location.startswith(("//", "/\\")), (target, location)
            assert "\\" not in location and "\t" not in location, (target, location)
            assert urlsplit(urljoin(f"{url}/a/b", location)).netloc == parts.netloc
        assert redirects >= 8  # the token redirects and the trailing-slash ones happened
        # the cookie redirect still leads where the user was going
        response = raw_request(address, f"/meters/house?token={TOKEN}&bucket=hour", {"Host": host})
        assert location_of(response) == "/meters/house?bucket=hour"
    finally:
        assert stop(process) == 0
