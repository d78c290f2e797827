"""Log output of the long-running commands: to a terminal, a file, or systemd's journal.

Verbosity: warnings and errors by default (``base`` raises it: a service logs its cycles at
INFO); ``-v`` INFO, ``-vv`` DEBUG of ours; ``-vvv`` adds the libraries' own debug output
(MQTT packet dumps, asyncio, the database drivers).

Under systemd with its output going to the journal (``JOURNAL_STREAM`` names the device and
inode of our stderr), every line starts with its syslog priority (``<6>`` for INFO: the
journal files it under that priority) and carries no timestamp of its own: the journal adds
one. Elsewhere a line is ``time level logger: message``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["JournalFormatter", "level_for", "setup_logging", "to_journal"]

#: syslog priorities of the logging levels (sd-daemon(3): ``<N>`` line prefixes)
PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The handler :func:`setup_logging` installed last.
_installed: logging.Handler | None = None


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``, one line per record (a traceback's lines too)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno)
        if priority is None:  # a level of its own: the nearest standard one below it
            below = [level for level in PRIORITIES if level <= record.levelno]
            priority = PRIORITIES[max(below)] if below else 7
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def to_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal's: ``JOURNAL_STREAM`` is ``device:inode`` of it."""
    env = os.environ if env is None else env
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def level_for(verbose: int, base: int = 0) -> tuple[int, int]:
    """The level of our loggers and of everything else, for ``-v`` given ``verbose`` times."""
    steps = verbose + base
    ours = (logging.WARNING, logging.INFO)[steps] if steps < 2 else logging.DEBUG
    libraries = logging.DEBUG if verbose >= 3 else logging.WARNING
    return ours, libraries


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (a program that redirects it,
    a test's capture), not to the one it was made with."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup_logging(verbose: int, *, base: int = 0, stream: TextIO | None = None) -> None:
    """Send log records to ``stream`` (stderr) at the levels ``verbose`` and ``base`` ask for."""
    handler: logging.Handler = _Stderr() if stream is None else logging.StreamHandler(stream)
    if to_journal(sys.stderr if stream is None else stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    ours, libraries = level_for(verbose, base)
    root = logging.getLogger()
    global _installed  # noqa: PLW0603 - one handler of ours, however often this is called
    if _installed is not None:
        root.removeHandler(_installed)
    _installed = handler  # handlers others installed (a test's log capture) stay
    root.addHandler(handler)
    root.setLevel(libraries)
    logging.getLogger("kamstrup382").setLevel(ours)
