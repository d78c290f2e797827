"""Checks of the ``[mqtt]`` and ``[prometheus]`` tables: each bad value raises
:class:`~kamstrup382.errors.ConfigError` naming its dotted key (``mqtt.qos``).

Values may arrive as text when an environment variable (``K382_MQTT_QOS=0``) sets a key the
file does not hold, so numbers and booleans are also accepted in their text form. The checks
of text, integers, booleans and keys are the configuration's own
(:mod:`kamstrup382.collector.config`), re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kamstrup382.collector.config import boolean, check_keys, integer, parse_duration, text
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

_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):(\d{1,5})")


def table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table, got {type(value).__name__}")
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
