"""The keys of an output's connection to its server, checked alike for MQTT and InfluxDB.

- :func:`parse_credentials`: ``username``, ``password`` and (InfluxDB) ``token``;
- :func:`parse_tls_files`: ``ca_file``, ``certfile``, ``keyfile``: existing files, only with
  TLS, a key file only with its certificate;
- :func:`parse_tls_switch`: the boolean that loosens the server's check (``insecure``,
  ``verify``), only with TLS;
- :func:`client_context`: the TLS context of those files, a file that cannot be loaded named
  by its key;
- :func:`default_client_id`: the name a client holds claims and connects by;
- :func:`parse_durations`, :func:`parse_state_file`: an output's timeouts and retry delays
  (seconds) and the file its state is kept in (``k382 status`` reads it).

Each bad value raises :class:`~kamstrup382.errors.ConfigError` naming its dotted key
(``table.key``: ``mqtt.certfile``, ``influxdb.token``). A password or a token never appears
in an error.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kamstrup382 import settings as check
from kamstrup382.errors import ConfigError

__all__ = [
    "client_context",
    "default_client_id",
    "parse_credentials",
    "parse_durations",
    "parse_state_file",
    "parse_tls_files",
    "parse_tls_switch",
]


def default_client_id() -> str:
    """``kamstrup382-<hostname>-<pid>``."""
    return f"kamstrup382-{socket.gethostname()}-{os.getpid()}"


def parse_durations(data: Mapping[str, Any], table: str, keys: Sequence[str]) -> dict[str, float]:
    """The ``keys`` of ``data`` that are given, each in seconds."""
    return {key: check.seconds(data[key], f"{table}.{key}") for key in keys if key in data}


def parse_state_file(data: Mapping[str, Any], table: str) -> dict[str, str]:
    """``state_file``, if given, with ``~`` expanded."""
    if "state_file" not in data:
        return {}
    return {
        "state_file": str(Path(check.text(data["state_file"], f"{table}.state_file")).expanduser())
    }


def parse_credentials(
    data: Mapping[str, Any],
    table: str,
    *,
    empty_password: bool = False,
    needs_password: bool = False,
    token: bool = False,
) -> dict[str, str]:
    """The credentials given in ``data``: ``username`` and ``password`` (a password needs a
    username; with ``needs_password`` a username needs a password too; ``empty_password``
    admits ``""``) and, with ``token``, a ``token`` instead of them."""
    found: dict[str, str] = {}
    if "username" in data:
        found["username"] = check.text(data["username"], f"{table}.username")
    if "password" in data:
        found["password"] = check.text(data["password"], f"{table}.password", empty=empty_password)
    if token and "token" in data:
        found["token"] = check.text(data["token"], f"{table}.token")
    if "password" in found and "username" not in found:
        raise ConfigError(f"{table}.username", "missing: a password needs a username")
    if needs_password and "username" in found and "password" not in found:
        raise ConfigError(f"{table}.password", "missing: a username needs a password")
    if "token" in found and "username" in found:
        raise ConfigError(f"{table}.token", "give either a token or username and password")
    return found


def parse_tls_files(
    data: Mapping[str, Any],
    table: str,
    keys: Sequence[str],
    *,
    tls: bool,
    scheme: str,
) -> dict[str, str]:
    """Each of ``keys`` (of ``ca_file``, ``certfile``, ``keyfile``) given in ``data``: the path
    of an existing file (``~`` expanded), given only with TLS (``scheme``: the URL scheme that
    turns it on, for the error); a ``keyfile`` needs its ``certfile``."""
    found: dict[str, str] = {}
    for key in keys:
        if key in data:
            path = check.text(data[key], f"{table}.{key}")
            if not Path(path).expanduser().is_file():
                raise ConfigError(f"{table}.{key}", f"no such file: {path}")
            if not tls:
                raise ConfigError(f"{table}.{key}", f"only used with an {scheme}:// url")
            found[key] = str(Path(path).expanduser())
    if "keyfile" in found and "certfile" not in found:
        raise ConfigError(f"{table}.certfile", "missing: a keyfile needs its certfile")
    return found


def parse_tls_switch(
    data: Mapping[str, Any],
    table: str,
    key: str,
    *,
    tls: bool,
    scheme: str,
    harmless: bool | None = None,
) -> bool | None:
    """The boolean ``key`` (``None`` when not given), given only with TLS; without it only
    the ``harmless`` value passes (``None``: no value does)."""
    if key not in data:
        return None
    value = check.boolean(data[key], f"{table}.{key}")
    if not tls and value is not harmless:
        raise ConfigError(f"{table}.{key}", f"only used with an {scheme}:// url")
    return value


def client_context(
    table: str,
    ca_file: str | None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> ssl.SSLContext:
    """A client's TLS context trusting ``ca_file`` (default: the system's CAs), presenting
    ``certfile`` with ``keyfile`` if given; a file it cannot load raises
    :class:`ConfigError` naming ``table.ca_file``, or ``table.certfile`` for the certificate
    and its key."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{table}.ca_file", f"cannot load for TLS: {exc}") from exc
    if certfile is not None:
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{table}.certfile", f"cannot load for TLS: {exc}") from exc
    return context
