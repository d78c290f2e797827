"""The ``[mqtt]`` table, checked: :class:`MqttSettings`.

Configuration (the ``[mqtt]`` table; only ``url`` is required)::

    [mqtt]
    url = "mqtt://broker.local"        # mqtt://HOST[:1883] or mqtts://HOST[:8883] (TLS)
    topic_prefix = "kamstrup382"       # state and availability topics
    discovery_prefix = "homeassistant" # Home Assistant discovery topics
    discovery = true                   # false: no discovery configs, no HA status subscription
    qos = 1                            # 0, 1 or 2 for state messages (1: at least once)
    retain = true                      # retain state messages (HA shows the last value at once)
    username = "k382"
    password = "..."                   # or the environment: K382_MQTT_PASSWORD
    client_id = "kamstrup382-host"     # default: kamstrup382-<hostname>-<pid>
    protocol = "3.1.1"                 # or "5"
    ca_file = "/etc/ssl/my-ca.pem"     # mqtts: the CA to trust (default: the system's)
    certfile = "client.pem"            # mqtts: a client certificate (with keyfile)
    keyfile = "client.key"
    insecure = false                   # mqtts: accept any certificate and host name (testing!)
    keepalive = 60                     # seconds
    timeout = 10                       # seconds for one broker operation
    reconnect_delay = 1                # first wait before reconnecting; doubles up to
    reconnect_max = 60                 # this many seconds
    login_retry = "5m"                 # first wait after the broker refused the login; doubles
    login_retry_max = "1h"             # up to this (a wrong password must not hammer the broker)
    state_file = "/var/lib/k382/mqtt.json"  # the output's state for `k382 status`
                                       # (default: beside a SQLite database; none for PostgreSQL)
    batch_size = 100                   # outbox entries published per round
    stop_timeout = 5                   # seconds to flush the outbox on shutdown
    outbox_lease = 60                  # seconds a claim on meters of a shared outbox lasts
                                       # (and on the devices announced to Home Assistant)
    configuration_url = "https://k382.example/"  # the dashboard as Home Assistant's users
                                       # reach it (default: from [http]; "" for none)

Each bad value raises :class:`~kamstrup382.errors.ConfigError` naming its dotted key.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from kamstrup382.errors import ConfigError
from kamstrup382.outputs import settings as check
from kamstrup382.outputs.connection_settings import (
    client_context,
    default_client_id,
    parse_credentials,
    parse_durations,
    parse_state_file,
    parse_tls_files,
    parse_tls_switch,
)
from kamstrup382.outputs.discovery import Topics, check_topic_prefix

__all__ = ["MqttSettings"]

#: The keys given in seconds.
_DURATIONS = (
    "timeout",
    "reconnect_delay",
    "reconnect_max",
    "login_retry",
    "login_retry_max",
    "stop_timeout",
    "outbox_lease",
)

_KEYS = (
    "url",
    "topic_prefix",
    "discovery_prefix",
    "discovery",
    "qos",
    "retain",
    "username",
    "password",
    "client_id",
    "protocol",
    "ca_file",
    "certfile",
    "keyfile",
    "insecure",
    "keepalive",
    "timeout",
    "reconnect_delay",
    "reconnect_max",
    "login_retry",
    "login_retry_max",
    "state_file",
    "batch_size",
    "stop_timeout",
    "outbox_lease",
    "configuration_url",
)
_PROTOCOLS = {
    "3.1.1": aiomqtt.ProtocolVersion.V311,
    "311": aiomqtt.ProtocolVersion.V311,
    "5": aiomqtt.ProtocolVersion.V5,
    "5.0": aiomqtt.ProtocolVersion.V5,
}
_SCHEMES = {"mqtt": (False, 1883), "tcp": (False, 1883), "mqtts": (True, 8883), "ssl": (True, 8883)}


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """A checked ``[mqtt]`` table."""

    host: str
    port: int = 1883
    tls: bool = False
    topic_prefix: str = "kamstrup382"
    discovery_prefix: str = "homeassistant"
    discovery: bool = True
    qos: int = 1
    retain: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = field(default_factory=default_client_id)
    protocol: str = "3.1.1"
    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False
    keepalive: int = 60
    timeout: float = 10.0
    reconnect_delay: float = 1.0
    reconnect_max: float = 60.0
    login_retry: float = 300.0
    login_retry_max: float = 3600.0
    state_file: str | None = None
    batch_size: int = 100
    stop_timeout: float = 5.0
    outbox_lease: float = 60.0
    #: The dashboard's address for Home Assistant's "Visit" link (``""``: none; ``None``: the
    #: one the ``[http]`` table gives, see :meth:`dashboard_url`).
    configuration_url: str | None = None

    @classmethod
    def parse(cls, section: Mapping[str, Any]) -> MqttSettings:
        """Check the ``[mqtt]`` table; :class:`ConfigError` names the first bad key."""
        data = check.table(section, "mqtt")
        check.check_keys(data, _KEYS, "mqtt")
        if "url" not in data:
            raise ConfigError("mqtt.url", "missing (e.g. mqtt://localhost:1883)")
        host, port, tls = _parse_url(data["url"])
        values: dict[str, Any] = {"host": host, "port": port, "tls": tls}
        for key in ("topic_prefix", "discovery_prefix"):
            if key in data:
                prefix = check.text(data[key], f"mqtt.{key}")
                problem = check_topic_prefix(prefix)
                if problem:
                    raise ConfigError(f"mqtt.{key}", f"{prefix!r} {problem}")
                values[key] = prefix
        for key in ("discovery", "retain"):
            if key in data:
                values[key] = check.boolean(data[key], f"mqtt.{key}")
        if "qos" in data:
            values["qos"] = check.integer(data["qos"], "mqtt.qos", low=0, high=2)
        if "client_id" in data:
            values["client_id"] = check.text(data["client_id"], "mqtt.client_id")
        values |= parse_credentials(data, "mqtt", empty_password=True)
        if "protocol" in data:
            text = str(data["protocol"]).strip().lower().removeprefix("v")
            if text not in _PROTOCOLS:
                raise ConfigError(
                    "mqtt.protocol", f'expected "3.1.1" or "5", got {data["protocol"]!r}'
                )
            values["protocol"] = "5" if _PROTOCOLS[text] is aiomqtt.ProtocolVersion.V5 else "3.1.1"
        values |= parse_tls_files(
            data, "mqtt", ("ca_file", "certfile", "keyfile"), tls=tls, scheme="mqtts"
        )
        insecure = parse_tls_switch(
            data, "mqtt", "insecure", tls=tls, scheme="mqtts", harmless=False
        )
        if insecure is not None:
            values["insecure"] = insecure
        if "keepalive" in data:
            values["keepalive"] = check.integer(
                data["keepalive"], "mqtt.keepalive", low=1, high=65535
            )
        values |= parse_durations(data, "mqtt", _DURATIONS)
        values |= parse_state_file(data, "mqtt")
        if "configuration_url" in data:
            values["configuration_url"] = check.http_url(
                data["configuration_url"], "mqtt.configuration_url", empty=True
            )
        if "batch_size" in data:
            values["batch_size"] = check.integer(
                data["batch_size"], "mqtt.batch_size", low=1, high=10_000
            )
        settings = cls(**values)
        if settings.reconnect_max < settings.reconnect_delay:
            raise ConfigError("mqtt.reconnect_max", "must not be less than mqtt.reconnect_delay")
        if settings.login_retry_max < settings.login_retry:
            raise ConfigError("mqtt.login_retry_max", "must not be less than mqtt.login_retry")
        if settings.outbox_lease < 2 * settings.timeout:
            # a round publishes for up to about one timeout: the claim must outlast it
            raise ConfigError(
                "mqtt.outbox_lease",
                f"must be at least twice mqtt.timeout ({2 * settings.timeout:g} s), "
                f"got {settings.outbox_lease:g} s",
            )
        return settings

    def dashboard_url(self, served: str | None) -> str | None:
        """The dashboard address devices link to: ``configuration_url`` when set (``""``:
        none), else ``served``, the address the ``[http]`` table gives (if any)."""
        if self.configuration_url is not None:
            return self.configuration_url or None
        return served

    @property
    def protocol_version(self) -> aiomqtt.ProtocolVersion:
        return _PROTOCOLS[self.protocol]

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix, self.discovery_prefix)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``mqtts://`` (``None`` for plain ``mqtt://``)."""
        if not self.tls:
            return None
        context = client_context("mqtt", self.ca_file, self.certfile, self.keyfile)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _parse_url(value: object) -> tuple[str, int, bool]:
    url = check.text(value, "mqtt.url").strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError("mqtt.url", f"bad URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigError(
            "mqtt.url", f"bad scheme in {url!r}: use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "mqtt.url",
            "credentials belong in mqtt.username and mqtt.password (or K382_MQTT_PASSWORD)",
        )
    if not parts.hostname:
        raise ConfigError("mqtt.url", f"no host in {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("mqtt.url", f"unexpected path or query in {url!r}")
    tls, default_port = _SCHEMES[parts.scheme.lower()]
    if port == 0:
        raise ConfigError("mqtt.url", "port 0 is not a broker port")
    return parts.hostname, port if port is not None else default_port, tls
