"""Checks of the ``[mqtt]`` and ``[prometheus]`` tables: each bad value raises
:class:`~kamstrup382.errors.ConfigError` naming its dotted key (``mqtt.qos``).

Values may arrive as text when an environment variable (``K382_MQTT_QOS=0``) sets a key the
file does not hold, so numbers and booleans are also accepted in their text form.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from kamstrup382.collector.config import parse_duration
from kamstrup382.errors import ConfigError

__all__ = [
    "boolean",
    "check_keys",
    "host_port",
    "integer",
    "seconds",
    "table",
    "text",
]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):(\d{1,5})")


def table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table, got {type(value).__name__}")
    return value


def check_keys(data: Mapping[str, Any], known: Collection[str], section: str) -> None:
    for name in data:
        if name not in known:
            raise ConfigError(
                f"{section}.{name}", f"unknown key (known: {', '.join(sorted(known))})"
            )


def text(value: object, key: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {type(value).__name__}")
    if not empty and not value.strip():
        raise ConfigError(key, "must not be empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigError(key, "contains a control character")
    return value


def boolean(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise ConfigError(key, f"expected true or false, got {value!r}")


def integer(value: object, key: str, *, low: int, high: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(key, f"expected an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high}, got {value}")
    return value


def seconds(value: object, key: str) -> float:
    """A positive duration: seconds or text such as ``"500ms"``, ``"30s"``, ``"2m"``."""
    return parse_duration(value, key).total_seconds()


def host_port(value: object, key: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``host:port`` (``[::1]:9382`` for IPv6; port 0: any free port) -> (host, port)."""
    spec = text(value, key).strip()
    if spec.startswith(":") and default_host is not None:
        spec = default_host + spec
    match = _HOST_PORT.fullmatch(spec)
    if match is None:
        raise ConfigError(key, f"expected host:port (e.g. 127.0.0.1:9382), got {value!r}")
    host, port = match.group(1).strip("[]"), int(match.group(2))
    if port > 65535:
        raise ConfigError(key, f"port {port} out of range 0-65535")
    return host, port
