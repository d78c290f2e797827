"""The sd_notify protocol against a real Unix datagram socket, as systemd listens on it."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamstrup382.systemd import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path


def test_ready_status_watchdog_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert notifier.active
    assert notifier.watchdog_interval == 2.0
    notifier.ready("collecting 3 meters")
    assert sock.recv(4096) == b"READY=1\nSTATUS=collecting 3 meters"
    notifier.status("slot 12:00:\n 3 read,\t0 failed")  # one line, whatever it is given
    assert sock.recv(4096) == b"STATUS=slot 12:00: 3 read, 0 failed"
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading("reloading k382.toml")
    reloading, usec, status = sock.recv(4096).split(b"\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert (reloading, status) == (b"RELOADING=1", b"STATUS=reloading k382.toml")
    assert usec.startswith(b"MONOTONIC_USEC=")
    assert before <= int(usec.removeprefix(b"MONOTONIC_USEC=")) <= after
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_the_abstract_namespace() -> None:
    name = f"k382-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier(f"@{name}")
        notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        notifier.close()


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.active
    assert notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.close()


def test_a_watchdog_of_another_process_is_not_ours(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    other = Notifier.from_environment(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert other.watchdog_interval is None
    other.watchdog()  # sends nothing
    other.ready()
    assert sock.recv(4096) == b"READY=1"
    other.close()
    ours = Notifier.from_environment(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert ours.watchdog_interval == 0.5


def test_a_socket_that_is_gone_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nothing-here"), 2_000_000)
    with caplog.at_level(logging.DEBUG, logger="kamstrup382.systemd"):
        notifier.ready()
        notifier.watchdog()
        notifier.watchdog()
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    notifier.close()
