"""Telling systemd how a service is doing: the ``sd_notify`` datagram protocol, by hand.

A unit with ``Type=notify`` starts the process with ``NOTIFY_SOCKET`` in its environment: the
path of a Unix datagram socket (``@name`` for one in the abstract namespace). The process
sends it lines ``KEY=value``: ``READY=1`` once it does its work (``systemctl start`` returns
then, and units ordered after it start), ``STATUS=...`` for ``systemctl status``,
``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` microseconds when the unit sets
``WatchdogSec`` (systemd restarts a process that stops sending it), ``RELOADING=1`` when it
begins to reload its configuration (``READY=1`` again when done), ``STOPPING=1`` when it
begins to shut down. Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.

The watchdog interval is half of ``WATCHDOG_USEC``, as systemd recommends; a
``WATCHDOG_PID`` naming another process means the watchdog is not ours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)

#: systemd shows one line of status; keep it short
MAX_STATUS = 200


class Notifier:
    """Sends state changes to systemd's notification socket, if there is one."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        #: seconds between two ``WATCHDOG=1``, or ``None`` when no watchdog is asked for
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd's environment variables describe (a silent one outside it)."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        watchdog: int | None = None
        pid = env.get("WATCHDOG_PID")
        usec = env.get("WATCHDOG_USEC", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def active(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> None:
        self._send("READY=1", status)

    def status(self, status: str) -> None:
        self._send(None, status)

    def watchdog(self) -> None:
        if self.watchdog_interval is not None:
            self._send("WATCHDOG=1", None)

    async def keep_watchdog(self) -> None:
        """Ping the watchdog from the event loop until cancelled: a loop that hangs stops the
        pings, and systemd restarts the service. Returns at once when no watchdog is asked."""
        interval = self.watchdog_interval
        if interval is None or self.address is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)

    def reloading(self, status: str | None = None) -> None:
        """A reload begins (SIGHUP): ``RELOADING=1`` with the monotonic time systemd asks
        for; :meth:`ready` ends it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}", status)

    def stopping(self, status: str | None = None) -> None:
        self._send("STOPPING=1", status)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, state: str | None, status: str | None) -> None:
        if self.address is None:
            return
        lines = [] if state is None else [state]
        if status is not None:
            lines.append("STATUS=" + " ".join(status.split())[:MAX_STATUS])
        address = self.address
        if address.startswith("@"):  # the abstract namespace
            address = "\0" + address[1:]
        try:
            if self._socket is None:
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                self._socket = socket.socket(socket.AF_UNIX, kind)
            self._socket.sendto("\n".join(lines).encode(), address)
        except OSError as exc:  # systemd gone or the socket wrong: the service goes on
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "cannot notify systemd at %s: %s", self.address, exc)
