"""Files and directories the storage creates: owner-only, made durable.

A new directory is created ``0700`` and a new file ``0600`` (the readings and the spill journal
are the user's data, like the files ``k382 export`` writes); an existing one keeps its mode.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["create_private_file", "fsync_dir", "make_private_dir"]


def make_private_dir(path: Path) -> None:
    """``path`` and its missing parents, each created owner-only (0700); existing ones are left
    as they are. :class:`OSError` when one cannot be created."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and owner-only (0600) unless it exists; whether it was created
    (then its directory is fsynced). :class:`OSError` when it cannot be created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    fsync_dir(path.parent)
    return True


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable (a file created or removed in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
