"""Running the dashboard with uvicorn: where it may listen, and a server that stops on an event.

:func:`check_listen` holds the rule: on a loopback address the dashboard may run without a
token; on any other address (a LAN address, ``0.0.0.0``, a host name) it refuses to start
without one. :func:`allowed_hosts` gives the ``Host`` names a server on loopback without a
token answers to: the one it was given (so the address it prints answers) and ``localhost``;
any loopback address is accepted besides (see :class:`~kamstrup382.web.security.HostGuard`).
:func:`run_server` serves with the limits of :mod:`kamstrup382.web.connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from kamstrup382 import settings
from kamstrup382.errors import UsageError
from kamstrup382.settings import DEFAULT_HOST, DEFAULT_PORT, Listen
from kamstrup382.web.connections import Limits, guarded_protocol, raise_open_files

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LOOPBACK_HOSTS",
    "Limits",
    "Listen",
    "allowed_hosts",
    "bind_socket",
    "check_listen",
    "parse_listen",
    "run_server",
    "stop_on_signals",
]

#: Connections the kernel queues for the server to accept.
LISTEN_QUEUE = 2048
#: ``Host`` names accepted when serving on loopback without a token (DNS rebinding guard),
#: besides any loopback address.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def parse_listen(text: str, *, name: str = "--http") -> Listen:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``HOST`` or ``:PORT`` (port 0: any free port), the rule
    of :func:`kamstrup382.settings.listen`; errors name the option (``name``)."""
    return settings.listen(text, name)


def allowed_hosts(listen: Listen, token: str | None) -> tuple[str, ...] | None:
    """The ``Host`` names to accept: with a token any (``None``); without one, the loopback
    names and the name ``listen`` was given, so that the address printed always answers."""
    if token:
        return None
    return (*LOOPBACK_HOSTS, listen.host)


def check_listen(listen: Listen, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token."""
    if not listen.loopback and not token:
        raise UsageError(
            f"refusing to serve the dashboard on {listen.host}:{listen.port} without a token: "
            "anyone who can reach that address could read the meters. Give a token "
            "(k382 serve: $K382_HTTP_TOKEN, --token-file or token_file in the [http] table; "
            "k382 demo: --token), or listen on 127.0.0.1."
        )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its caller (who sets ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT/SIGTERM while inside (from the running event loop)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def bind_socket(listen: Listen) -> socket.socket:
    """A listening TCP socket on ``listen`` (a host name: its first address).

    Bound here rather than by uvicorn, which exits the whole process when it cannot bind:
    an address in use or not available is a :class:`UsageError` saying so.
    """
    try:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"cannot listen on {listen.host}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(LISTEN_QUEUE)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {listen.host}:{listen.port}: {exc.strerror or exc}"
        ) from exc
    return sock


async def run_server(
    app: ASGIApp,
    listen: Listen,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[str], None] | None = None,
    limits: Limits | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set; ``on_ready(url)`` once it listens (actual port).

    ``limits``: what one client may hold (default :class:`Limits`). The process's soft
    open-file limit is raised as far as they need and its hard limit allows; the connection
    limit is then kept below it.
    """
    limits = limits or Limits()
    raise_open_files(limits)
    limits = limits.within_open_files()
    sock = bind_socket(listen)
    config = uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        http=guarded_protocol(limits),
        ws="none",
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_keep_alive=limits.keep_alive,
        timeout_graceful_shutdown=limits.shutdown_timeout,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        backlog=limits.backlog,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    stopper = asyncio.create_task(stop.wait())
    try:
        while not server.started:
            done, _ = await asyncio.wait({task, stopper}, timeout=0.05)
            if task in done:
                task.result()
                raise UsageError(f"the web server on {listen.url()} stopped while starting")
            if stopper in done:
                break
        if server.started:
            # asyncio set the kernel's queue to the connections it accepts in one turn
            # (``limits.backlog``): a longer queue keeps a burst of connections from being
            # dropped, while the short turns keep the files in use below the limit
            sock.listen(LISTEN_QUEUE)
            if on_ready is not None:
                on_ready(listen.url(sock.getsockname()[1]))
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
    finally:
        server.should_exit = True
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
        if not task.done():
            await task
        sock.close()
