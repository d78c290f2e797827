"""The collector's configuration: a TOML file, checked completely at start.

Layout (every table and key optional except ``[[meters]]`` ``name`` and ``port``)::

    [storage]
    url = "sqlite:///var/lib/k382/readings.sqlite"   # or "postgresql://user@host/db"

    [collector]
    interval = "15m"        # default for every meter; slots align to the wall clock
    jitter = "0s"           # each readout starts at a random moment in [slot, slot + jitter)
    retries = 2             # extra attempts after the first
    backoff = 0.2           # seconds before the first retry (the reader doubles it)
    answer_timeout = 0.6    # seconds to wait for the first byte of the answer
    answer_margin = 0.3     # extra seconds allowed per phase
    deadline = 30           # seconds for one whole readout (absent: none)
    lease = "2m"            # PostgreSQL: how long a claim on a meter lasts
    id = "host-a"           # collector id for leases (default: hostname-pid)
    batch_size = 500        # results stored per transaction at most
    flush_interval = 0.5    # seconds a result may wait for its batch
    grace = 10              # seconds in-flight readouts may finish on shutdown
    keep_connected = false  # keep a lone meter's connection between readouts (not with PostgreSQL)

    [[meters]]
    name = "house"
    port = "socket://192.168.1.50:4001"
    line = "8N1"            # default: 8N1 for socket://, 7E1 for a device path or rfc2217://
    bcc = "auto"            # auto | sum7 | xor
    interval = "15m"        # and jitter, retries, backoff, answer_timeout, answer_margin, deadline
    shared_line = "gw1"     # meters naming the same line are read one at a time (default: port)

Durations are seconds (a number) or a text such as ``"90s"``, ``"15m"``, ``"1h"``, ``"1h30m"``.

Environment variables override single keys: ``K382_<SECTION>_<KEY>`` (upper case) sets ``KEY``
of ``[section]`` for the tables ``storage``, ``collector``, ``mqtt``, ``prometheus`` and
``http`` (e.g. ``K382_STORAGE_URL``, ``K382_MQTT_PASSWORD``). For ``mqtt``, ``prometheus`` and
``http`` the override applies only when the table is in the file, and the value is converted to
the type of the value it replaces (integer, float, boolean) or kept as text.

Every bad value or unknown key raises :class:`~kamstrup382.errors.ConfigError` whose ``key`` is
the dotted path of the value (``meters[2].port``, ``collector.interval``).
"""

from __future__ import annotations

import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from kamstrup382.errors import ConfigError
from kamstrup382.protocol import BccMode
from kamstrup382.reading import LineMode

__all__ = [
    "ENV_PREFIX",
    "OWNED_SECTIONS",
    "CollectorConfig",
    "Config",
    "MeterConfig",
    "StorageConfig",
    "boolean",
    "build_meter",
    "check_keys",
    "default_line",
    "integer",
    "load_config",
    "parse_config",
    "parse_duration",
    "text",
]

#: Prefix of the environment variables that override config keys.
ENV_PREFIX = "K382_"
#: Tables kept raw in :attr:`Config.sections` for the outputs and the web app to parse.
OWNED_SECTIONS = ("mqtt", "prometheus", "http")
_TYPED_SECTIONS = ("storage", "collector")
_TOP_LEVEL = ("meters", *_TYPED_SECTIONS, *OWNED_SECTIONS)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SOCKET_PORT = re.compile(r"(socket|rfc2217)://(\[[0-9A-Fa-f:.]+\]|[^:/\s]+):(\d{1,5})")
_WINDOWS_PORT = re.compile(r"COM\d+", re.IGNORECASE)


def default_line(port: str) -> LineMode:
    """8N1 for ``socket://`` (a TCP gateway passes the parity bit through), 7E1 otherwise."""
    return LineMode.EIGHT_N_ONE if port.startswith("socket://") else LineMode.SEVEN_E_ONE


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """One meter to read: where, how and how often."""

    name: str
    port: str
    line: LineMode
    bcc: BccMode
    interval: timedelta
    jitter: timedelta
    shared_line: str
    retries: int
    backoff: float
    answer_timeout: float
    answer_margin: float
    deadline: float | None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Collector-wide settings and the defaults of every meter."""

    interval: timedelta = timedelta(minutes=15)
    jitter: timedelta = timedelta(0)
    retries: int = 2
    backoff: float = 0.2
    answer_timeout: float = 0.6
    answer_margin: float = 0.3
    deadline: float | None = None
    lease: timedelta = timedelta(minutes=2)
    id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_size: int = 500
    flush_interval: float = 0.5
    grace: float = 10.0
    #: Keep the port of a meter alone on its line open from one readout to the next (opened
    #: again before a readout when it was lost); otherwise it is closed after each readout.
    keep_connected: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    """A checked configuration. ``sections`` holds the raw ``[mqtt]``, ``[prometheus]`` and
    ``[http]`` tables (after environment overrides) for their owners to parse."""

    meters: tuple[MeterConfig, ...]
    storage: StorageConfig
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    path: Path | None = None

    def meter(self, name: str) -> MeterConfig:
        for meter in self.meters:
            if meter.name == name:
                return meter
        raise KeyError(name)


# -- value parsers: each takes the dotted key for its error (the outputs' too) --------------------


def parse_duration(value: object, key: str, *, allow_zero: bool = False) -> timedelta:
    """Seconds (int/float) or ``"1h30m"``-style text -> timedelta; ConfigError on bad input."""
    seconds: float
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        written = value.strip().lower()
        try:
            seconds = float(written)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(written):
                if written[pos : match.start()].strip():
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos == 0 or written[pos:].strip():
                raise ConfigError(
                    key, f"bad duration {value!r}: use seconds or e.g. '90s', '15m', '1h30m'"
                ) from None
    else:
        raise ConfigError(key, f"expected a duration, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ConfigError(key, f"bad duration {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(key, f"duration must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return timedelta(seconds=seconds)


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


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True} | {
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def boolean(value: object, key: str) -> bool:
    """``true`` or ``false``; as text (from the environment) also 1/0, yes/no, on/off."""
    if isinstance(value, str):
        value = _BOOL_WORDS.get(value.strip().lower(), value)
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def _seconds(value: object, key: str, *, positive: bool = False) -> float:
    """A duration (number of seconds or ``"250ms"``-style text) as float seconds."""
    return parse_duration(value, key, allow_zero=not positive).total_seconds()


def text(value: object, key: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {type(value).__name__}")
    if not empty and not value.strip():
        raise ConfigError(key, "must not be empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigError(key, "contains a control character")
    return value


def _name(value: object, key: str) -> str:
    name = text(value, key)
    if not _NAME.fullmatch(name):
        raise ConfigError(
            key,
            f"bad name {name!r}: 1-64 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit",
        )
    return name


def _port(value: object, key: str) -> str:
    port = text(value, key)
    if "://" in port:
        match = _SOCKET_PORT.fullmatch(port)
        if not match:
            raise ConfigError(
                key,
                f"bad port {port!r}: use socket://HOST:PORT, rfc2217://HOST:PORT or a device path",
            )
        if not 1 <= int(match.group(3)) <= 65535:
            raise ConfigError(key, f"TCP port {match.group(3)} out of range 1-65535")
    elif not (port.startswith("/") or _WINDOWS_PORT.fullmatch(port)):
        raise ConfigError(key, f"bad port {port!r}: a device path must be absolute (/dev/...)")
    return port


_E = TypeVar("_E", LineMode, BccMode)


def _choice(enum: type[_E], value: object, key: str) -> _E:
    choices = [member.value for member in enum]
    if isinstance(value, str):
        for member in enum:
            if member.value.lower() == value.strip().lower():
                return member
    raise ConfigError(key, f"expected one of {', '.join(choices)}, got {value!r}")


def _storage_url(value: object, key: str) -> str:
    url = text(value, key)
    if url.startswith("sqlite:///"):
        if len(url) == len("sqlite:///"):
            raise ConfigError(key, "sqlite URL lacks a path: sqlite:///path/to/file.sqlite")
        return url
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise ConfigError(key, f"unsupported storage URL {url!r}: use sqlite:///PATH or postgresql://")


def _table(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a table, got {type(value).__name__}")
    return value


def check_keys(table: Mapping[str, Any], known: Collection[str], prefix: str) -> None:
    for name in table:
        if name not in known:
            raise ConfigError(
                f"{prefix}.{name}", f"unknown key (known: {', '.join(sorted(known))})"
            )


# -- the sections ------------------------------------------------------------------------------

# keys a meter may set itself; the collector table supplies the defaults of the shared ones
_TIMING_PARSERS: dict[str, Callable[[object, str], Any]] = {
    "interval": parse_duration,
    "jitter": lambda v, k: parse_duration(v, k, allow_zero=True),
    "retries": lambda v, k: integer(v, k, low=0, high=20),
    "backoff": _seconds,
    "answer_timeout": lambda v, k: _seconds(v, k, positive=True),
    "answer_margin": _seconds,
    "deadline": lambda v, k: _seconds(v, k, positive=True),
}
_COLLECTOR_PARSERS: dict[str, Callable[[object, str], Any]] = {
    **_TIMING_PARSERS,
    "lease": parse_duration,
    "id": _name,
    "batch_size": lambda v, k: integer(v, k, low=1, high=100_000),
    "flush_interval": lambda v, k: _seconds(v, k, positive=True),
    "grace": _seconds,
    "keep_connected": boolean,
}
_METER_PARSERS: dict[str, Callable[[object, str], Any]] = {
    "name": _name,
    "port": _port,
    "line": lambda v, k: _choice(LineMode, v, k),
    "bcc": lambda v, k: _choice(BccMode, v, k),
    "shared_line": text,
    **_TIMING_PARSERS,
}
_STORAGE_PARSERS: dict[str, Callable[[object, str], Any]] = {"url": _storage_url}


def _parse_collector(table: Mapping[str, Any]) -> CollectorConfig:
    check_keys(table, _COLLECTOR_PARSERS, "collector")
    values = {name: _COLLECTOR_PARSERS[name](v, f"collector.{name}") for name, v in table.items()}
    return CollectorConfig(**values)


def build_meter(table: Mapping[str, Any], defaults: CollectorConfig, index: int = 0) -> MeterConfig:
    """One ``[[meters]]`` table (the ``index``-th, for error keys) with the collector defaults."""
    return _parse_meter(table, index, defaults)


def _parse_meter(table: Mapping[str, Any], index: int, defaults: CollectorConfig) -> MeterConfig:
    prefix = f"meters[{index}]"
    check_keys(table, _METER_PARSERS, prefix)
    for required in ("name", "port"):
        if required not in table:
            raise ConfigError(f"{prefix}.{required}", "missing")
    values = {name: _METER_PARSERS[name](v, f"{prefix}.{name}") for name, v in table.items()}
    port: str = values["port"]
    return MeterConfig(
        name=values["name"],
        port=port,
        line=values.get("line", default_line(port)),
        bcc=values.get("bcc", BccMode.AUTO),
        interval=values.get("interval", defaults.interval),
        jitter=values.get("jitter", defaults.jitter),
        shared_line=values.get("shared_line", port),
        retries=values.get("retries", defaults.retries),
        backoff=values.get("backoff", defaults.backoff),
        answer_timeout=values.get("answer_timeout", defaults.answer_timeout),
        answer_margin=values.get("answer_margin", defaults.answer_margin),
        deadline=values.get("deadline", defaults.deadline),
    )


def _default_storage_url() -> str:
    from kamstrup382.storage.url import default_storage_url  # noqa: PLC0415 - storage is optional here

    return default_storage_url()


def _convert_env(raw: str, like: object) -> object:
    """An environment value converted to the type of the value it replaces."""
    if isinstance(like, bool):
        return _BOOL_WORDS.get(raw.strip().lower(), raw)
    for kind in (int, float):
        if isinstance(like, kind):
            try:
                return kind(raw.strip())
            except ValueError:
                return raw
    return raw


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Apply ``K382_<SECTION>_<KEY>`` overrides to ``data`` in place."""
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX):
            continue
        rest = variable[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in (*_TYPED_SECTIONS, *OWNED_SECTIONS) or not key:
            continue
        if section in OWNED_SECTIONS:
            table = data.get(section)
            if not isinstance(table, dict):
                continue
        else:
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                continue
            parsers = _STORAGE_PARSERS if section == "storage" else _COLLECTOR_PARSERS
            if key not in parsers:
                raise ConfigError(
                    f"{section}.{key}",
                    f"unknown key set by environment variable {variable}",
                )
        table[key] = _convert_env(env[variable], table.get(key))


def parse_config(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Config:
    """Check a parsed TOML document and build the :class:`Config`.

    ``env`` defaults to ``os.environ``; pass ``{}`` to ignore the environment.
    """
    document: dict[str, Any] = {
        name: dict(value) if isinstance(value, dict) else value for name, value in data.items()
    }
    for name in document:
        if name not in _TOP_LEVEL:
            raise ConfigError(name, f"unknown section (known: {', '.join(_TOP_LEVEL)})")
    _apply_env(document, os.environ if env is None else env)

    collector = _parse_collector(_table(document.get("collector", {}), "collector"))

    storage_table = _table(document.get("storage", {}), "storage")
    check_keys(storage_table, _STORAGE_PARSERS, "storage")
    if "url" in storage_table:
        url = _storage_url(storage_table["url"], "storage.url")
    else:
        url = _default_storage_url()

    raw_meters = document.get("meters", [])
    if not isinstance(raw_meters, list):
        raise ConfigError("meters", "expected an array of tables: [[meters]]")
    meters: list[MeterConfig] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(raw_meters):
        meter = _parse_meter(_table(table, f"meters[{index}]"), index, collector)
        if meter.name in seen:
            raise ConfigError(
                f"meters[{index}].name",
                f"duplicate name {meter.name!r} (also meters[{seen[meter.name]}].name)",
            )
        seen[meter.name] = index
        meters.append(meter)

    sections = {
        name: MappingProxyType(_table(document[name], name))
        for name in OWNED_SECTIONS
        if name in document
    }
    return Config(
        meters=tuple(meters),
        storage=StorageConfig(url=url),
        collector=collector,
        sections=MappingProxyType(sections),
        path=path,
    )


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read and check a TOML config file; :class:`ConfigError` on any problem."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(file), "config file not found") from None
    except OSError as exc:
        raise ConfigError(str(file), f"cannot read config file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), f"not valid TOML: {exc}") from exc
    return parse_config(data, env=env, path=file)
