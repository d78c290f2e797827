"""The process's open-file limit, raised for as many lines as the emulator serves.

Each TCP meter needs a listening socket and a connected one, each pty meter a master, a
slave and the emulator's own descriptor of the slave: thousands of meters go far beyond the
usual soft limit of 1024.
"""

from __future__ import annotations

import contextlib
import resource

__all__ = ["more_files", "open_file_limit"]


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
