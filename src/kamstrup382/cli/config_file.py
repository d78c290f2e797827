"""Which configuration file a command uses, when ``--config`` does not say.

The first that exists, in this order:

1. ``--config FILE`` (it must exist);
2. ``K382_CONFIG`` (it must exist too: a variable naming a missing file is an error, not a
   reason to look elsewhere);
3. ``./k382.toml``;
4. ``k382.toml`` in the user's configuration directory (``~/.config/k382/`` on Linux, or
   ``$XDG_CONFIG_HOME/k382/``: the systemd unit of ``k382 service unit`` sets it to ``/etc``);
5. ``/etc/k382/k382.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import platformdirs

from kamstrup382.errors import ConfigError

__all__ = ["CONFIG_ENV", "FILE_NAME", "candidates", "find_config"]

CONFIG_ENV = "K382_CONFIG"
FILE_NAME = "k382.toml"
SYSTEM_DIR = Path("/etc/k382")


def candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """The places looked at after ``--config`` and ``K382_CONFIG``, in order."""
    env = os.environ if env is None else env
    config_home = env.get("XDG_CONFIG_HOME")
    user_dir = (
        Path(config_home) / "k382" if config_home else Path(platformdirs.user_config_dir("k382"))
    )
    places = [Path.cwd() / FILE_NAME, user_dir / FILE_NAME, SYSTEM_DIR / FILE_NAME]
    return list(dict.fromkeys(places))  # /etc/k382 twice under the service: once


def find_config(explicit: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file to use, or ``None`` when there is none anywhere.

    :class:`ConfigError` when ``explicit`` or ``K382_CONFIG`` names a file that is not there.
    """
    env = os.environ if env is None else env
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(str(explicit), "config file not found")
        return explicit
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(CONFIG_ENV, f"names {named}, which is not a file")
        return path
    for place in candidates(env):
        if place.is_file():
            return place
    return None
