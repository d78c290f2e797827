"""The checks of configuration values, shared by every table of the config file.

Each check takes a value as the TOML file (or an environment variable) gave it and the dotted
key it came from (``collector.interval``, ``meters[2].port``, ``mqtt.qos``), and returns the
value in its type or raises :class:`~kamstrup382.errors.ConfigError` naming that key. The
collector's config (:mod:`kamstrup382.collector.config`), the outputs
(:mod:`kamstrup382.outputs.settings`) and the dashboard's ``[http]`` table all use these: each
rule is written once.

Values may arrive as text when an environment variable (``K382_MQTT_QOS=0``) sets a key the
file does not hold, so numbers and booleans are also accepted in their text form.

A meter's port follows the reader's syntax (:func:`kamstrup382.reader.port.parse_port`) and the
storage URL the storage's (:func:`kamstrup382.storage.url.check_storage_url`); these checks only
put the key on their errors.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from kamstrup382.errors import ConfigError, UsageError
from kamstrup382.reader.port import PortKind, parse_port
from kamstrup382.storage.url import check_storage_url

__all__ = [
    "BOOL_WORDS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_DURATION",
    "Listen",
    "boolean",
    "check_keys",
    "choice",
    "host_port",
    "http_url",
    "identifier",
    "integer",
    "listen",
    "meter_port",
    "parse_duration",
    "seconds",
    "storage_url",
    "table",
    "text",
]

#: The dashboard's address when none is given.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8382
#: The words a boolean may be written as in text (the environment).
BOOL_WORDS: Mapping[str, bool] = {"1": True, "true": True, "yes": True, "on": True} | {
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The longest duration any key accepts: longer ones are typing mistakes, and far longer ones
#: do not fit a ``timedelta`` or a sleep.
MAX_DURATION = timedelta(days=366)
_BAD_HOST = re.compile(r"[\s\[\]/]")
_PORT = re.compile(r"[0-9]{1,5}")
_WINDOWS_PORT = re.compile(r"COM\d+", re.IGNORECASE)


# -- plain values ------------------------------------------------------------------------------


def table(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table, got {type(value).__name__}")
    return value


def check_keys(table: Mapping[str, Any], known: Collection[str], prefix: str) -> None:
    """:class:`ConfigError` on the first key of ``table`` not in ``known``."""
    for name in table:
        if name not in known:
            raise ConfigError(
                f"{prefix}.{name}", f"unknown key (known: {', '.join(sorted(known))})"
            )


def text(value: object, key: str, *, empty: bool = False) -> str:
    """A string without control characters; not blank unless ``empty``."""
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {type(value).__name__}")
    if not empty and not value.strip():
        raise ConfigError(key, "must not be empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigError(key, "contains a control character")
    return value


def http_url(value: object, key: str, *, empty: bool = False) -> str:
    """An ``http(s)://HOST[:PORT][/PATH]`` address a browser opens (``""`` when ``empty``)."""
    url = text(value, key, empty=empty).strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(key, f"bad URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"expected http://HOST[:PORT][/PATH] or https://..., got {url!r}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(key, f"no credentials, query or fragment in {url!r}")
    return url


def identifier(value: object, key: str) -> str:
    """A name: 1-64 letters, digits, ``_ . : -``, starting with a letter or digit."""
    name = text(value, key)
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigError(
            key,
            f"bad name {name!r}: 1-64 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit",
        )
    return name


def integer(value: object, key: str, *, low: int, high: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(key, f"expected an integer, got {_shown(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected an integer, got {_shown(value)}")
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high}, got {_shown(value)}")
    return value


def boolean(value: object, key: str) -> bool:
    """``true`` or ``false``; as text (from the environment) also 1/0, yes/no, on/off."""
    if isinstance(value, str):
        value = BOOL_WORDS.get(value.strip().lower(), value)
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {_shown(value)}")
    return value


_E = TypeVar("_E", bound=enum.Enum)


def choice(enum_type: type[_E], value: object, key: str) -> _E:
    """The member of ``enum_type`` whose (text) value is ``value``, ignoring case."""
    choices = [str(member.value) for member in enum_type]
    if isinstance(value, str):
        for member in enum_type:
            if str(member.value).lower() == value.strip().lower():
                return member
    raise ConfigError(key, f"expected one of {', '.join(choices)}, got {_shown(value)}")


# -- durations ---------------------------------------------------------------------------------


def parse_duration(value: object, key: str, *, allow_zero: bool = False) -> timedelta:
    """Seconds (int/float) or ``"1h30m"``-style text -> timedelta, at most
    :data:`MAX_DURATION`; ConfigError on bad input."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration, got {_shown(value)}")
    if isinstance(value, int | float):
        amount = _finite(value, value, key)
    elif isinstance(value, str):
        amount = _duration_text(value, key)
    else:
        raise ConfigError(key, f"expected a duration, got {type(value).__name__}")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ConfigError(
            key, f"duration must be {'>= 0' if allow_zero else '> 0'}, got {_shown(value)}"
        )
    if amount > MAX_DURATION.total_seconds():
        raise ConfigError(
            key, f"duration must be at most {MAX_DURATION.days}d, got {_shown(value)}"
        )
    duration = timedelta(seconds=amount)
    if amount > 0 and not duration:  # below the microsecond a timedelta holds: not 0 silently
        raise ConfigError(key, f"duration must be at least 1 microsecond, got {_shown(value)}")
    return duration


def _finite(number: float, written: object, key: str) -> float:
    """``number`` as a finite float (an int too large for one is refused too)."""
    try:
        amount = float(number)
    except OverflowError:
        amount = math.inf
    if not math.isfinite(amount):
        raise ConfigError(key, f"bad duration {_shown(written)}: not a finite number")
    return amount


def _shown(value: object) -> str:
    """``value`` for a one-line message, cut to a readable length."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond the interpreter's digit limit
        return f"an {type(value).__name__} too long to show"
    return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"


def _duration_text(value: str, key: str) -> float:
    written = value.strip().lower()
    try:
        number = float(written)
    except ValueError:
        pass
    else:
        return _finite(number, value, key)
    pos, amount = 0, 0.0
    for match in _DURATION_PART.finditer(written):
        if written[pos : match.start()].strip():
            break
        amount += _finite(float(match.group(1)), value, key) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or written[pos:].strip():
        raise ConfigError(
            key, f"bad duration {_shown(value)}: use seconds or e.g. '90s', '15m', '1h30m'"
        )
    return _finite(amount, value, key)


def seconds(value: object, key: str, *, allow_zero: bool = False) -> float:
    """A duration (seconds or text such as ``"500ms"``, ``"30s"``, ``"2m"``) as float seconds;
    positive unless ``allow_zero``."""
    return parse_duration(value, key, allow_zero=allow_zero).total_seconds()


# -- addresses ---------------------------------------------------------------------------------


def meter_port(value: object, key: str) -> str:
    """A meter's port: a device path (absolute, or ``COM3``), ``socket://HOST:PORT`` or
    ``rfc2217://HOST:PORT`` (the reader's syntax, TCP port 1-65535)."""
    port = text(value, key)
    usage = "use socket://HOST:PORT, rfc2217://HOST:PORT or a device path"
    try:
        spec = parse_port(port)
    except UsageError as exc:
        raise ConfigError(key, f"bad port {port!r}: {usage} ({exc})") from None
    if spec.kind is PortKind.URL:
        raise ConfigError(key, f"bad port {port!r}: {usage}")
    if spec.kind is PortKind.DEVICE and not (port.startswith("/") or _WINDOWS_PORT.fullmatch(port)):
        raise ConfigError(key, f"bad port {port!r}: a device path must be absolute (/dev/...)")
    return port


def storage_url(value: object, key: str) -> str:
    """A storage URL that :func:`kamstrup382.storage.url.open_storage` can open."""
    return check_storage_url(text(value, key), key)


def _address(value: object, key: str) -> tuple[str | None, int | None]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``HOST``, ``[IPv6]`` or ``:PORT`` -> (host, port), the
    missing part ``None``: the one grammar of every address a server of ours listens on."""
    written = text(value, key, empty=True).strip()
    host: str | None
    port_text: str | None = None
    if written.startswith("["):
        end = written.find("]")
        if end < 0:
            raise ConfigError(key, f"{written!r} lacks the closing ']' of an IPv6 address")
        host, rest = written[1:end], written[end + 1 :]
        if not host:
            raise ConfigError(key, f"{written!r}: empty host")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(key, f"{written!r} is not [IPv6]:PORT")
            port_text = rest[1:]
    elif written.count(":") == 1:
        host, port_text = written.split(":")
    elif ":" in written:
        raise ConfigError(key, f"{written!r}: write an IPv6 address in brackets, [::1]:8382")
    else:
        host = written
    if host is not None and _BAD_HOST.search(host):
        raise ConfigError(key, f"bad host {host!r} in {written!r}")
    if port_text is None:
        return host or None, None
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ConfigError(key, f"port {port_text!r} is not a number 0..65535")
    return host or None, int(port_text)


def host_port(value: object, key: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``host:port`` (``[::1]:9382`` for IPv6; port 0: any free port) -> (host, port); the host
    may be left out (``:9382``) when there is a ``default_host``."""
    host, port = _address(value, key)
    host = host or default_host
    if host is None or port is None:
        raise ConfigError(key, f"expected host:port (e.g. 127.0.0.1:9382), got {_shown(value)}")
    return host, port


@dataclass(frozen=True, slots=True)
class Listen:
    """Where a server listens: a host (name or address) and a TCP port (0: any free one)."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


def listen(value: object, key: str) -> Listen:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``HOST`` or ``:PORT`` (port 0: any free port); the
    missing part is :data:`DEFAULT_HOST` or :data:`DEFAULT_PORT`."""
    host, port = _address(value, key)
    return Listen(host or DEFAULT_HOST, DEFAULT_PORT if port is None else port)
