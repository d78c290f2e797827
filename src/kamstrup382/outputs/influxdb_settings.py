"""The ``[influxdb]`` table, checked: :class:`InfluxSettings`.

Configuration (only ``url`` and ``database`` are required)::

    [influxdb]
    url = "http://influx.local:8086"   # http:// or https:// (TLS); a path prefix is kept
    database = "energy"                # the 1.x database (2.x/3.x: the DBRP-mapped name)
    retention_policy = "autogen"       # default: the database's default policy
    measurement = "kamstrup382"
    tags = { site = "home" }           # added to every point (not meter, customer_number,
                                       # type_number: those are the output's own)
    precision = "ns"                   # "ns", "us", "ms" or "s": the time of each point
    username = "k382"                  # HTTP basic authentication ...
    password = "..."                   # ... or the environment: K382_INFLUXDB_PASSWORD
    token = "..."                      # or "Authorization: Token ..." (K382_INFLUXDB_TOKEN)
    ca_file = "/etc/ssl/my-ca.pem"     # https: the CA to trust (default: the system's)
    verify = true                      # https: false accepts any certificate (testing!)
    batch_size = 5000                  # points per request
    timeout = 10                       # seconds for one request
    retry_delay = 1                    # first wait after a failed write; doubles up to
    retry_max = 60                     # this many seconds
    login_retry = "5m"                 # first wait after 401/403; doubles up to
    login_retry_max = "1h"             # this (a wrong password must not hammer the server)
    stop_timeout = 5                   # seconds to flush the queue on shutdown
    outbox_lease = 60                  # seconds a claim on meters of a shared queue lasts
    client_id = "kamstrup382-host"     # holder of claims (default: kamstrup382-<host>-<pid>)
    state_file = "/var/lib/k382/influxdb.json"  # the output's state for `k382 status`

Each bad value raises :class:`~kamstrup382.errors.ConfigError` naming its dotted key. The
password and the token are never shown: not in ``repr``, not in the log, not in errors.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from kamstrup382 import settings as check
from kamstrup382.errors import ConfigError
from kamstrup382.outputs.connection_settings import (
    client_context,
    default_client_id,
    parse_credentials,
    parse_durations,
    parse_state_file,
    parse_tls_files,
    parse_tls_switch,
)
from kamstrup382.outputs.influxdb_line import PRECISIONS, escape_key, escape_measurement

__all__ = ["OWN_TAGS", "InfluxSettings"]

#: The keys given in seconds.
_DURATIONS = (
    "timeout",
    "retry_delay",
    "retry_max",
    "login_retry",
    "login_retry_max",
    "stop_timeout",
    "outbox_lease",
)

_KEYS = (
    "url",
    "database",
    "retention_policy",
    "measurement",
    "tags",
    "precision",
    "username",
    "password",
    "token",
    "ca_file",
    "verify",
    "batch_size",
    "timeout",
    "retry_delay",
    "retry_max",
    "login_retry",
    "login_retry_max",
    "stop_timeout",
    "outbox_lease",
    "client_id",
    "state_file",
)
#: The tags every point carries of its own (see :mod:`kamstrup382.outputs.influxdb_series`).
OWN_TAGS = ("meter", "customer_number", "type_number", "meter_type", "serial")
_SCHEMES = {"http": 8086, "https": 8086}


@dataclass(frozen=True, slots=True)
class InfluxSettings:
    """A checked ``[influxdb]`` table."""

    url: str
    database: str
    retention_policy: str | None = None
    measurement: str = "kamstrup382"
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    precision: str = "ns"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify: bool = True
    batch_size: int = 5000
    timeout: float = 10.0
    retry_delay: float = 1.0
    retry_max: float = 60.0
    login_retry: float = 300.0
    login_retry_max: float = 3600.0
    stop_timeout: float = 5.0
    outbox_lease: float = 60.0
    client_id: str = field(default_factory=default_client_id)
    state_file: str | None = None

    @classmethod
    def parse(cls, section: Mapping[str, Any]) -> InfluxSettings:
        """Check the ``[influxdb]`` table; :class:`ConfigError` names the first bad key."""
        data = check.table(section, "influxdb")
        check.check_keys(data, _KEYS, "influxdb")
        for key in ("url", "database"):
            if key not in data:
                raise ConfigError(f"influxdb.{key}", "missing")
        values: dict[str, Any] = {"url": _parse_url(data["url"])}
        for key in ("database", "retention_policy", "client_id"):
            if key in data:
                values[key] = check.text(data[key], f"influxdb.{key}")
        values |= parse_credentials(data, "influxdb", needs_password=True, token=True)
        if "measurement" in data:
            name = check.text(data["measurement"], "influxdb.measurement")
            try:
                escape_measurement(name)
            except ValueError as exc:
                raise ConfigError("influxdb.measurement", str(exc)) from None
            values["measurement"] = name
        if "tags" in data:
            values["tags"] = _parse_tags(data["tags"])
        if "precision" in data:
            precision = check.text(data["precision"], "influxdb.precision").strip().lower()
            if precision not in PRECISIONS:
                raise ConfigError(
                    "influxdb.precision",
                    f"expected one of {', '.join(PRECISIONS)}, got {data['precision']!r}",
                )
            values["precision"] = precision
        https = values["url"].startswith("https:")
        values |= parse_tls_files(data, "influxdb", ("ca_file",), tls=https, scheme="https")
        verify = parse_tls_switch(data, "influxdb", "verify", tls=https, scheme="https")
        if verify is not None:
            values["verify"] = verify
        if "batch_size" in data:
            values["batch_size"] = check.integer(
                data["batch_size"], "influxdb.batch_size", low=1, high=100_000
            )
        values |= parse_durations(data, "influxdb", _DURATIONS)
        values |= parse_state_file(data, "influxdb")
        settings = cls(**values)
        if settings.retry_max < settings.retry_delay:
            raise ConfigError("influxdb.retry_max", "must not be less than influxdb.retry_delay")
        if settings.login_retry_max < settings.login_retry:
            raise ConfigError(
                "influxdb.login_retry_max", "must not be less than influxdb.login_retry"
            )
        if settings.outbox_lease < 2 * settings.timeout:
            # a round writes for up to about one timeout: the claim must outlast it
            raise ConfigError(
                "influxdb.outbox_lease",
                f"must be at least twice influxdb.timeout ({2 * settings.timeout:g} s), "
                f"got {settings.outbox_lease:g} s",
            )
        return settings

    @property
    def write_url(self) -> str:
        """The ``/write`` endpoint with its query (database, retention policy, precision)."""
        query = {"db": self.database, "precision": self.precision}
        if self.retention_policy is not None:
            query["rp"] = self.retention_policy
        return f"{self.url}/write?{urlencode(query, quote_via=quote)}"

    def headers(self) -> dict[str, str]:
        """The request's headers, authentication included (never log them)."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.token is not None:
            headers["Authorization"] = f"Token {self.token}"
        elif self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def tls_context(self) -> ssl.SSLContext | bool:
        """What the HTTP client verifies the server with: a context for ``https://`` (the
        system's CAs or ``ca_file``), ``False`` with ``verify = false``; ``True`` for http."""
        if not self.url.startswith("https:"):
            return True
        if not self.verify:
            return False
        return client_context("influxdb", self.ca_file)


def _parse_url(value: object) -> str:
    url = check.text(value, "influxdb.url").strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError("influxdb.url", f"bad URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigError(
            "influxdb.url", f"bad scheme in {url!r}: use http://HOST[:PORT] or https://HOST[:PORT]"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "influxdb.url",
            "credentials belong in influxdb.username and influxdb.password, or influxdb.token",
        )
    if not parts.hostname:
        raise ConfigError("influxdb.url", f"no host in {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError("influxdb.url", f"unexpected query in {url!r}: give influxdb.database")
    if port == 0:
        raise ConfigError("influxdb.url", "port 0 is not a server port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port if port is not None else _SCHEMES[parts.scheme.lower()]}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def _parse_tags(value: object) -> Mapping[str, str]:
    table = check.table(value, "influxdb.tags")
    tags: dict[str, str] = {}
    for key, tag in table.items():
        where = f"influxdb.tags.{key}"
        if key in OWN_TAGS:
            raise ConfigError(where, "is a tag of the output's own")
        text = check.text(tag, where)
        try:
            escape_key(key, "tag key")
            escape_key(text, "tag value")
        except ValueError as exc:
            raise ConfigError(where, str(exc)) from None
        tags[key] = text
    return MappingProxyType(tags)
