"""The process's open-file limit, raised for as many lines as the emulator serves.

Each TCP meter needs a listening socket and a connected one, each pty meter a master, a
slave and the emulator's own descriptor of the slave: thousands of meters go far beyond the
usual soft limit of 1024. :func:`reserve_files` raises the limit for a count of meters and
refuses, before anything is opened, a count it cannot serve.
"""

from __future__ import annotations

import contextlib
import resource
from typing import Literal

from kamstrup382.errors import UsageError

__all__ = [
    "FILES_PER_METER",
    "SPARE_FILES",
    "files_needed",
    "more_files",
    "open_file_limit",
    "reserve_files",
]

#: Descriptors besides the meters' lines: the standard streams, the event loop and its
#: self-pipe, the files Python and the options open.
SPARE_FILES = 64
#: Descriptors a meter needs at the least. TCP: its listening socket; when the limit cannot
#: hold a second one per meter, a reader's connection takes the listener's place (one reader
#: at a time, as on the meter's optical port). A pty: the master, the slave and the
#: emulator's own descriptor of the slave.
FILES_PER_METER: dict[str, int] = {"tcp": 1, "pty": 3}
#: Descriptors a meter can use: TCP its listener and a connected reader.
_FILES_WANTED: dict[str, int] = {"tcp": 2, "pty": 3}


def open_file_limit() -> int:
    """The soft open-file limit now."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def more_files(need: int) -> int:
    """Raise the open-file limit towards ``need`` (soft to hard; hard too where allowed).

    Returns the soft limit reached, which may stay below ``need``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    infinite = resource.RLIM_INFINITY
    if hard != infinite and hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
    target = hard if hard != infinite else max(need, soft)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return open_file_limit()


def files_needed(transport: Literal["tcp", "pty"], meters: int) -> int:
    """The open files ``meters`` meters on ``transport`` need at the least."""
    return FILES_PER_METER[transport] * meters + SPARE_FILES


def reserve_files(transport: Literal["tcp", "pty"], meters: int) -> int:
    """Raise the open-file limit for ``meters`` meters; returns the soft limit reached.

    Raises :class:`UsageError` when even the hard limit (raised too, where allowed) stays
    below :func:`files_needed`: the meters could not all be served.
    """
    need = files_needed(transport, meters)
    limit = more_files(_FILES_WANTED[transport] * meters + 4 * SPARE_FILES)
    if limit < need:
        raise UsageError(
            f"{meters} {transport} meters need {need} open files, the limit is {limit} "
            "and cannot be raised (ulimit -n)"
        )
    return limit
