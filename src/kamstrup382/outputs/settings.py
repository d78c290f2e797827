"""The value checks the ``[mqtt]`` and ``[prometheus]`` tables use: each bad value raises
:class:`~kamstrup382.errors.ConfigError` naming its dotted key (``mqtt.qos``).

They are the configuration's own checks (:mod:`kamstrup382.settings`, below both the outputs
and the collector), gathered here under the names the outputs call them by.
"""

from __future__ import annotations

from kamstrup382.settings import (
    boolean,
    check_keys,
    host_port,
    http_url,
    integer,
    seconds,
    table,
    text,
)

__all__ = [
    "boolean",
    "check_keys",
    "host_port",
    "http_url",
    "integer",
    "seconds",
    "table",
    "text",
]
