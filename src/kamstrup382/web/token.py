"""Where the dashboard's token comes from, kept out of ``ps``: the environment or a file.

A token on the command line (``--token``) is seen by every user of the machine in ``ps``; the
environment (:data:`TOKEN_ENV`) and a file (``--token-file``, ``token_file`` in ``[http]``)
are not. A token file readable by its group or by others gets a warning.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kamstrup382.errors import ConfigError

__all__ = [
    "LEGACY_TOKEN_ENV",
    "MAX_TOKEN_BYTES",
    "TOKEN_ENV",
    "TokenFile",
    "env_token",
    "read_token_file",
]

TOKEN_ENV = "K382_HTTP_TOKEN"
#: The older name, still read.
LEGACY_TOKEN_ENV = "K382_TOKEN"
MAX_TOKEN_BYTES = 4096


def env_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The token from :data:`TOKEN_ENV` (or :data:`LEGACY_TOKEN_ENV`); empty counts as unset."""
    env = os.environ if environ is None else environ
    return env.get(TOKEN_ENV) or env.get(LEGACY_TOKEN_ENV) or None


@dataclass(frozen=True, slots=True)
class TokenFile:
    """A token read from a file; ``warning`` says when others may read the file too."""

    token: str
    warning: str | None = None


def read_token_file(path: Path, key: str) -> TokenFile:
    """The token in ``path`` (one line; surrounding white space dropped).

    ``key`` names where the path was given (``--token-file``, ``http.token_file``) in errors.
    """
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # checked before opening: a FIFO would block
            raise ConfigError(key, f"{path} is not a regular file")
        with path.open("rb") as file:
            raw = file.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_TOKEN_BYTES:
        raise ConfigError(key, f"{path} is over {MAX_TOKEN_BYTES} bytes")
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(key, f"{path} is not UTF-8 text") from exc
    if not token:
        raise ConfigError(key, f"{path} is empty")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(key, f"{path}: the token must be one line without spaces")
    warning = None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = (
            f"the token file {path} may be read by others (mode {stat.S_IMODE(mode):04o}); "
            "chmod 600 it"
        )
    return TokenFile(token, warning)
