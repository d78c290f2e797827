"""The dashboard's connections, bounded whatever the clients do.

What uvicorn (0.55, h11) offers, and why it is not enough on its own:

- ``timeout_keep_alive`` closes a connection left idle *after* a response; nothing is armed on
  a fresh connection, and every byte received cancels it. A client that connects and sends
  nothing, or its headers a byte at a time, holds its connection for ever.
- ``limit_concurrency`` answers ``503`` to a *new request* once that many connections are
  open: 3,000 clients that never finish their headers would turn every real client away.
  It is therefore not used.
- ``h11_max_incomplete_event_size`` bounds the bytes of a request's headers (beyond: 400).
- ``timeout_graceful_shutdown`` bounds how long a shutdown waits for requests in progress.
- There is no timeout for a request's headers.

:class:`GuardedH11Protocol` is uvicorn's h11 protocol (which ``uvicorn.Config(http=...)``
accepts as a class) with the missing parts, decided from h11's own connection states:

1. **Header timeout.** From the moment the server waits for a request (a connection opened,
   or the previous response sent) the client has :attr:`Limits.header_timeout` seconds to
   deliver all of it: request line, headers and body, if any (the dashboard takes none).
   Bytes arriving do not extend it. When it expires the server answers ``408`` (if the
   client had begun a request) and closes.
2. **Connection limit.** At most :attr:`Limits.max_connections` are open. A newcomer beyond
   that closes the *oldest* connection that has no response in progress (a client still
   dribbling its headers, or one idle between requests): slow clients make room for new
   ones instead of locking them out. Only when every open connection is being answered is
   the newcomer refused with ``503``. The limit is kept below the process's open-file limit,
   so that accepting never fails (asyncio, out of files, stops accepting for a second).
3. **Send timeout.** A client that stops reading its response (the transport's buffer stays
   full for :attr:`Limits.send_timeout` seconds) is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from kamstrup382.errors import UsageError

__all__ = [
    "Connections",
    "GuardedH11Protocol",
    "Limits",
    "guarded_protocol",
    "raise_open_files",
]

#: File descriptors left for everything but client connections (storage, threads, logs).
RESERVED_FILES = 64
#: Turns of the event loop for which connections accepted beyond the limit hold a file:
#: asyncio accepts up to ``backlog`` in one turn, makes their transports in the next, calls
#: ``connection_made`` (which evicts) in the one after, and closes the evicted in a fourth.
ACCEPT_TURNS = 4


def _plain_response(status: str, text: str, *extra: bytes) -> bytes:
    """A complete response that closes the connection, written without h11 (which has no
    response to send before a request arrived)."""
    body = text.encode()
    head = [
        f"HTTP/1.1 {status}".encode(),
        b"content-type: text/plain; charset=utf-8",
        b"content-length: %d" % len(body),
        b"connection: close",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


TIMED_OUT = _plain_response("408 Request Timeout", "the request came too slowly\n")
REFUSED = _plain_response(
    "503 Service Unavailable", "every connection is busy\n", b"retry-after: 1"
)


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of the server one client may hold, and for how long (seconds, bytes)."""

    header_timeout: float = 10.0
    keep_alive: int = 5
    send_timeout: float = 30.0
    max_connections: int = 1000
    max_header_bytes: int = 16 * 1024
    shutdown_timeout: int = 5
    #: connections the event loop accepts in one turn
    backlog: int = 64

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keep_alive", "send_timeout", "shutdown_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise UsageError(f"{name} must be in (0, 3600] seconds, got {value!r}")
        if self.max_connections < 1:
            raise UsageError(f"max_connections must be >= 1, got {self.max_connections!r}")
        if not 1 <= self.backlog <= 4096:
            raise UsageError(f"backlog must be in 1..4096, got {self.backlog!r}")
        if self.max_header_bytes < 1024:
            raise UsageError(f"max_header_bytes must be >= 1024, got {self.max_header_bytes!r}")

    @property
    def open_files(self) -> int:
        """Files these limits may hold at once (see :meth:`within_open_files`)."""
        return self.max_connections + RESERVED_FILES + ACCEPT_TURNS * self.backlog

    def within_open_files(self, open_files: int | None = None) -> Limits:
        """These limits with ``max_connections`` below an open-file limit (default: this
        process's), leaving room for the connections accepted before the oldest make room
        (:data:`ACCEPT_TURNS` times ``backlog``) and for :data:`RESERVED_FILES`: accepting
        never runs out of files.
        """
        if open_files is None:
            open_files, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            if open_files == resource.RLIM_INFINITY:
                return self
        room = max(1, open_files - RESERVED_FILES - ACCEPT_TURNS * self.backlog)
        return self if self.max_connections <= room else replace(self, max_connections=room)


def raise_open_files(limits: Limits) -> None:
    """Raise this process's soft open-file limit toward its hard limit, as far as ``limits``
    need (the hard limit is the system's to set: :meth:`Limits.within_open_files` then fits
    the limits to what there is)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = limits.open_files
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Connections:
    """The open connections of one server, oldest first, at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[GuardedH11Protocol, None] = {}

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, newcomer: GuardedH11Protocol) -> bool:
        """Count ``newcomer`` in; at the limit, close the oldest connection without a response
        in progress to make room, or refuse (``False``) when every one has a response going."""
        if len(self._open) >= self.limit:
            oldest = next((c for c in self._open if not c.answering), None)
            if oldest is None:
                return False
            self.remove(oldest)
            oldest.evict()
        self._open[newcomer] = None
        return True

    def remove(self, connection: GuardedH11Protocol) -> None:
        self._open.pop(connection, None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, a connection limit and a send timeout.

    Use a subclass made by :func:`guarded_protocol`, which binds the limits and the
    connections of one server.
    """

    limits: ClassVar[Limits]
    admitted: ClassVar[Connections]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._request_deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None

    @property
    def answering(self) -> bool:
        """A response is in progress (the request was received, the response not yet sent)."""
        return self.conn.our_state in (h11.SEND_RESPONSE, h11.SEND_BODY)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.admitted.admit(self):
            transport.write(REFUSED)
            transport.close()
            return
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.admitted.remove(self)
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(
                self.limits.send_timeout, self._send_timed_out
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def evict(self) -> None:
        """Close this connection to make room for a newer one."""
        self._cancel_timers()
        self.transport.close()

    def _watch(self) -> None:
        """Arm the request deadline while a request is awaited or arriving, disarm it once
        the request is complete."""
        if self.transport.is_closing():
            self._cancel_timers()
            return
        receiving = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if receiving and self._request_deadline is None:
            self._request_deadline = self.loop.call_later(
                self.limits.header_timeout, self._request_timed_out
            )
        elif not receiving and self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def _request_timed_out(self) -> None:
        self._request_deadline = None
        if self.transport.is_closing():
            return
        begun = self.conn.their_state is not h11.IDLE or bool(self.conn.trailing_data[0])
        if begun and self.conn.our_state is h11.IDLE:
            self.transport.write(TIMED_OUT)
        self.transport.close()

    def _send_timed_out(self) -> None:
        self._send_deadline = None
        self.transport.abort()  # what is buffered will not be read: drop it

    def _cancel_timers(self) -> None:
        for timer in (self._request_deadline, self._send_deadline):
            if timer is not None:
                timer.cancel()
        self._request_deadline = self._send_deadline = None


def guarded_protocol(limits: Limits) -> type[GuardedH11Protocol]:
    """A protocol class for one server: its limits and its own set of connections."""
    book = Connections(limits.max_connections)

    class ServerProtocol(GuardedH11Protocol):
        pass

    ServerProtocol.limits = limits
    ServerProtocol.admitted = book
    return ServerProtocol
