"""The collector's configuration: a TOML file, checked completely at start.

Layout (every table and key optional except ``[[meters]]`` ``name`` and ``port``)::

    [storage]
    url = "sqlite:///readings.sqlite"   # relative to this file; or "postgresql://user@host/db"
    retries = 3             # when the storage fails: tries of a batch beyond its first before
                            # it is spilled (at shutdown, or the end of collect --once)
    retry_delay = 1         # seconds between those tries
    max_pending = 100000    # results waiting for a failing storage at most; beyond: spilled
    spill_dir = "/var/lib/k382/state"  # the spill journal's directory (default: beside the
                            # SQLite file; for PostgreSQL the user's state directory)
    power_retention = "90d" # per-minute power from pulses kept this long

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
    protocol = "iec"        # of every meter: iec (mode A) | kmp | auto (see kmp_config.py)

    [[meters]]
    name = "house"
    port = "socket://192.168.1.50:4001"
    line = "auto"           # default: auto for socket:// (8N1 or a gateway's 7E1, told by the
                            # reply), 7E1 for a device path or rfc2217://
    bcc = "auto"            # auto | sum7 | xor
    interval = "15m"        # and jitter, retries, backoff, answer_timeout, answer_margin, deadline
    shared_line = "gw1"     # meters naming the same line are read one at a time (default: port)
    unique_id = "house-main" # its identity in Home Assistant (default: type number and customer
                            # number from its readings); the name is only the name shown
    pulses = "gpio:/dev/gpiochip0:17"  # live power from pin 3: see collector/pulse_config.py
    protocol = "kmp"        # a 382J/Jx/Lx7/M; with baud and registers: see kmp_config.py

    [http]                  # the dashboard (k382 serve)
    listen = "127.0.0.1:8382"
    token = "..."           # required to listen beyond loopback
    title = "Our house"
    refresh = 30            # seconds between page updates (0: none)
    public_url = "https://k382.example/"  # the dashboard as its users reach it (Home
                            # Assistant's "Visit" link; default: from listen, unless loopback)

Durations are seconds (a number) or a text such as ``"90s"``, ``"15m"``, ``"1h"``, ``"1h30m"``,
at most 366 days. The file is UTF-8; tables and arrays nest at most :data:`MAX_DEPTH` deep.

Environment variables override single keys: ``K382_<SECTION>_<KEY>`` (upper case) sets ``KEY``
of ``[section]`` for the tables ``storage``, ``collector``, ``mqtt``, ``influxdb``,
``prometheus`` and ``http`` (e.g. ``K382_STORAGE_URL``, ``K382_MQTT_PASSWORD``,
``K382_INFLUXDB_TOKEN``). For ``mqtt``, ``influxdb``, ``prometheus`` and ``http`` the override
applies only when the table is in the file, and the value is converted to the type of the value
it replaces (integer, float, boolean) or kept as text.

``[mqtt]``, ``[influxdb]`` and ``[prometheus]`` are kept raw in :attr:`Config.sections` for the
outputs to parse. Every value is checked by :mod:`kamstrup382.settings`; a meter's timing and
retries are the reader's own :class:`~kamstrup382.reader.policy.Timing` and
:class:`~kamstrup382.reader.policy.RetryPolicy`, handed to the reader whole.

Every bad value or unknown key raises :class:`~kamstrup382.errors.ConfigError` whose ``key`` is
the dotted path of the value (``meters[2].port``, ``collector.interval``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kamstrup382 import settings as check
from kamstrup382.collector.kmp_config import (
    KMP_CHECKS,
    KmpSettings,
    MeterProtocol,
    kmp_settings,
)
from kamstrup382.collector.pulse_config import (
    PULSE_CHECKS,
    TariffSettings,
    pulse_settings,
    tariff_settings,
)
from kamstrup382.errors import ConfigError, UsageError
from kamstrup382.protocol import BccMode
from kamstrup382.pulses.live import PulseSettings
from kamstrup382.reader.policy import RetryPolicy, Timing
from kamstrup382.reader.port import LineMode, check_line, default_line
from kamstrup382.settings import Listen, parse_duration
from kamstrup382.storage.url import default_storage_url

__all__ = [
    "ENV_PREFIX",
    "MAX_DEPTH",
    "OWNED_SECTIONS",
    "CollectorConfig",
    "Config",
    "HttpConfig",
    "MeterConfig",
    "StorageConfig",
    "build_meter",
    "load_config",
    "parse_config",
    "parse_duration",
]

#: Prefix of the environment variables that override config keys.
ENV_PREFIX = "K382_"
#: Tables kept raw in :attr:`Config.sections` for the outputs to parse.
OWNED_SECTIONS = ("mqtt", "influxdb", "prometheus")
#: Tables an environment variable may override only when the file holds them.
_OPTIONAL_SECTIONS = (*OWNED_SECTIONS, "http")
_TYPED_SECTIONS = ("storage", "collector")
_TOP_LEVEL = ("meters", *_TYPED_SECTIONS, *_OPTIONAL_SECTIONS)
#: How deep tables and arrays may nest (``meters[0].port`` is 2 deep; no key needs more than 4).
MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """One meter to read: where, how and how often. ``timing`` and ``retry`` go to the reader
    as they are."""

    name: str
    port: str
    line: LineMode
    bcc: BccMode
    interval: timedelta
    jitter: timedelta
    shared_line: str
    timing: Timing = field(default_factory=Timing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: The meter's identity for Home Assistant (``None``: its type and customer number).
    unique_id: str | None = None
    #: The meter's pulse input (pin 3), if it has one.
    pulses: PulseSettings | None = None
    #: The meter's tariff output (pin 4), if it has one.
    tariff: TariffSettings | None = None
    #: IEC 61107 mode A, KMP, or found at the first readout (:mod:`.kmp_config`).
    protocol: MeterProtocol = MeterProtocol.IEC
    #: The KMP line rate and register set (``None`` for a mode A meter).
    kmp: KmpSettings | None = None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """The ``[storage]`` table: where readings go, and what happens when it refuses them (see
    :class:`~kamstrup382.collector.writer.BatchWriter` and :mod:`.spill`)."""

    url: str
    retries: int = 3
    retry_delay: float = 1.0
    max_pending: int = 100_000
    #: The spill journal's directory; None: :func:`~kamstrup382.storage.url.spill_path`'s
    #: default (beside a SQLite file, the user's state directory for PostgreSQL).
    spill_dir: Path | None = None
    #: How long per-minute power (pin 3's pulses) is kept.
    power_retention: timedelta = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Collector-wide settings and the defaults of every meter."""

    interval: timedelta = timedelta(minutes=15)
    jitter: timedelta = timedelta(0)
    #: A meter's answer window and deadline (``answer_timeout``, ``answer_margin``,
    #: ``deadline``), and its retries (``retries``, ``backoff``).
    timing: Timing = field(default_factory=Timing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease: timedelta = timedelta(minutes=2)
    id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch_size: int = 500
    flush_interval: float = 0.5
    grace: float = 10.0
    #: Keep the port of a meter alone on its line open from one readout to the next (opened
    #: again before a readout when it was lost); otherwise it is closed after each readout.
    keep_connected: bool = False
    #: The protocol of every meter that does not name one.
    protocol: MeterProtocol = MeterProtocol.IEC


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The dashboard's ``[http]`` table (``k382 serve``; its options win over it)."""

    listen: Listen | None = None
    token: str | None = None
    title: str | None = None
    #: Seconds between page updates (0: none).
    refresh: float = 30.0
    #: A file holding the token (relative to the config file's directory), kept out of ``ps``.
    token_file: str | None = None
    #: The dashboard's address as its users reach it (behind a proxy, a name of its own).
    public_url: str | None = None

    def dashboard_url(self) -> str | None:
        """Where users reach the dashboard, for links to it (Home Assistant's "Visit"):
        ``public_url``; else ``http://<listen>``, with this machine's name for a wildcard
        address; ``None`` without ``[http]`` or when it listens on loopback only (a link to
        127.0.0.1 would open the browser's own machine)."""
        if self.public_url:
            return self.public_url
        if self.listen is None or self.listen.loopback:
            return None
        host = self.listen.host
        try:
            if ipaddress.ip_address(host).is_unspecified:
                host = socket.getfqdn()
        except ValueError:
            pass  # a host name
        return Listen(host, self.listen.port).url()


@dataclass(frozen=True, slots=True)
class Config:
    """A checked configuration. ``sections`` holds the raw ``[mqtt]`` and ``[prometheus]``
    tables (after environment overrides) for the outputs to parse."""

    meters: tuple[MeterConfig, ...]
    storage: StorageConfig
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    path: Path | None = None

    def meter(self, name: str) -> MeterConfig:
        for meter in self.meters:
            if meter.name == name:
                return meter
        raise KeyError(name)


# -- the tables: one check per key -------------------------------------------------------------

_Check = Callable[[object, str], Any]

# keys a meter may set itself; the collector table supplies their defaults
_SCHEDULE_CHECKS: dict[str, _Check] = {
    "interval": check.parse_duration,
    "jitter": partial(check.parse_duration, allow_zero=True),
}
_TIMING_CHECKS: dict[str, _Check] = {
    "answer_timeout": check.seconds,
    "answer_margin": partial(check.seconds, allow_zero=True),
    "deadline": check.seconds,
}
_RETRY_CHECKS: dict[str, _Check] = {
    "retries": partial(check.integer, low=0, high=20),
    "backoff": partial(check.seconds, allow_zero=True),
}
_COLLECTOR_CHECKS: dict[str, _Check] = {
    **_SCHEDULE_CHECKS,
    **_TIMING_CHECKS,
    **_RETRY_CHECKS,
    "lease": check.parse_duration,
    "id": check.identifier,
    "batch_size": partial(check.integer, low=1, high=100_000),
    "flush_interval": check.seconds,
    "grace": partial(check.seconds, allow_zero=True),
    "keep_connected": check.boolean,
    "protocol": KMP_CHECKS["protocol"],
}
_METER_CHECKS: dict[str, _Check] = {
    "name": check.identifier,
    "port": check.meter_port,
    "line": partial(check.choice, LineMode),
    "bcc": partial(check.choice, BccMode),
    "shared_line": check.text,
    "unique_id": check.identifier,
    **_SCHEDULE_CHECKS,
    **_TIMING_CHECKS,
    **_RETRY_CHECKS,
    **PULSE_CHECKS,
    **KMP_CHECKS,
}
_STORAGE_CHECKS: dict[str, _Check] = {
    "url": check.storage_url,
    "retries": partial(check.integer, low=0, high=1000),
    "retry_delay": partial(check.seconds, allow_zero=True),
    "max_pending": partial(check.integer, low=1, high=10_000_000),
    "spill_dir": lambda v, k: Path(check.text(v, k)),
    "power_retention": check.parse_duration,
}
_HTTP_CHECKS: dict[str, _Check] = {
    "listen": lambda v, k: check.listen(check.text(v, k), k),
    "token": check.text,
    "token_file": check.text,
    "title": check.text,
    "refresh": partial(check.seconds, allow_zero=True),
    "public_url": check.http_url,
}


def _checked(table: Mapping[str, Any], checks: Mapping[str, _Check], prefix: str) -> dict[str, Any]:
    """Every value of ``table`` checked (its keys must be known), by name."""
    check.check_keys(table, checks, prefix)
    return {name: checks[name](value, f"{prefix}.{name}") for name, value in table.items()}


def _timing(values: Mapping[str, Any], default: Timing) -> Timing:
    return replace(default, **{name: values[name] for name in _TIMING_CHECKS if name in values})


def _retry(values: Mapping[str, Any], default: RetryPolicy) -> RetryPolicy:
    return replace(default, **{name: values[name] for name in _RETRY_CHECKS if name in values})


def _parse_collector(table: Mapping[str, Any]) -> CollectorConfig:
    values = _checked(table, _COLLECTOR_CHECKS, "collector")
    defaults = CollectorConfig()
    timing = _timing(values, defaults.timing)
    retry = _retry(values, defaults.retry)
    others = {k: v for k, v in values.items() if k not in _TIMING_CHECKS and k not in _RETRY_CHECKS}
    return CollectorConfig(timing=timing, retry=retry, **others)


def build_meter(table: Mapping[str, Any], defaults: CollectorConfig, index: int = 0) -> MeterConfig:
    """One ``[[meters]]`` table (the ``index``-th, for error keys) with the collector defaults."""
    prefix = f"meters[{index}]"
    check.check_keys(table, _METER_CHECKS, prefix)
    for required in ("name", "port"):
        if required not in table:
            raise ConfigError(f"{prefix}.{required}", "missing")
    values = {name: _METER_CHECKS[name](v, f"{prefix}.{name}") for name, v in table.items()}
    protocol, kmp = kmp_settings(values, prefix, defaults.protocol)
    port: str = values["port"]
    line = values.get("line", default_line(port))
    try:
        check_line(line, port)
    except UsageError as exc:
        raise ConfigError(f"{prefix}.line", str(exc)) from None
    return MeterConfig(
        name=values["name"],
        port=port,
        line=line,
        bcc=values.get("bcc", BccMode.AUTO),
        interval=values.get("interval", defaults.interval),
        jitter=values.get("jitter", defaults.jitter),
        shared_line=values.get("shared_line", port),
        timing=_timing(values, defaults.timing),
        retry=_retry(values, defaults.retry),
        unique_id=values.get("unique_id"),
        pulses=pulse_settings(values, prefix),
        tariff=tariff_settings(values, prefix),
        protocol=protocol,
        kmp=kmp,
    )


def _parse_http(table: Mapping[str, Any]) -> HttpConfig:
    return HttpConfig(**_checked(table, _HTTP_CHECKS, "http"))


# -- the environment ---------------------------------------------------------------------------


def _convert_env(raw: str, like: object) -> object:
    """An environment value converted to the type of the value it replaces."""
    if isinstance(like, bool):
        return check.BOOL_WORDS.get(raw.strip().lower(), raw)
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
        if section not in (*_TYPED_SECTIONS, *_OPTIONAL_SECTIONS) or not key:
            continue
        if section in _OPTIONAL_SECTIONS:
            table = data.get(section)
            if not isinstance(table, dict):
                continue
        else:
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                continue
            checks = _STORAGE_CHECKS if section == "storage" else _COLLECTOR_CHECKS
            if key not in checks:
                raise ConfigError(
                    f"{section}.{key}",
                    f"unknown key set by environment variable {variable}",
                )
        table[key] = _convert_env(env[variable], table.get(key))


# -- the document ------------------------------------------------------------------------------


def parse_config(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Config:
    """Check a parsed TOML document and build the :class:`Config`.

    ``env`` defaults to ``os.environ``; pass ``{}`` to ignore the environment.
    """
    _check_depth(data)
    document: dict[str, Any] = {
        name: dict(value) if isinstance(value, dict) else value for name, value in data.items()
    }
    for name in document:
        if name not in _TOP_LEVEL:
            raise ConfigError(name, f"unknown section (known: {', '.join(_TOP_LEVEL)})")
    _apply_env(document, os.environ if env is None else env)

    collector = _parse_collector(check.table(document.get("collector", {}), "collector"))

    storage = _checked(
        check.table(document.get("storage", {}), "storage"), _STORAGE_CHECKS, "storage"
    )
    url = storage.pop("url", None) or default_storage_url()
    if path is not None:
        url = relative_to_file(url, path)
    spill_dir = storage.pop("spill_dir", None)
    if spill_dir is not None and path is not None and not spill_dir.is_absolute():
        spill_dir = path.parent / spill_dir  # relative to the config file, like token_file

    raw_meters = document.get("meters", [])
    if not isinstance(raw_meters, list):
        raise ConfigError("meters", "expected an array of tables: [[meters]]")
    meters: list[MeterConfig] = []
    seen: dict[str, int] = {}
    unique_ids: dict[str, int] = {}
    for index, table in enumerate(raw_meters):
        meter = build_meter(check.table(table, f"meters[{index}]"), collector, index)
        if meter.name in seen:
            raise ConfigError(
                f"meters[{index}].name",
                f"duplicate name {meter.name!r} (also meters[{seen[meter.name]}].name)",
            )
        seen[meter.name] = index
        if meter.unique_id is not None:
            if meter.unique_id in unique_ids:
                raise ConfigError(
                    f"meters[{index}].unique_id",
                    f"duplicate unique_id {meter.unique_id!r} "
                    f"(also meters[{unique_ids[meter.unique_id]}].unique_id)",
                )
            unique_ids[meter.unique_id] = index
        meters.append(meter)

    http = _parse_http(check.table(document.get("http", {}), "http"))
    sections = {
        name: MappingProxyType(dict(check.table(document[name], name)))
        for name in OWNED_SECTIONS
        if name in document
    }
    return Config(
        meters=tuple(meters),
        storage=StorageConfig(url=url, spill_dir=spill_dir, **storage),
        collector=collector,
        http=http,
        sections=MappingProxyType(sections),
        path=path,
    )


def relative_to_file(url: str, config_file: Path) -> str:
    """A SQLite URL whose path is relative, made relative to the directory of ``config_file``
    (not to wherever the command was started); any other URL unchanged."""
    if not url.startswith("sqlite:///"):
        return url
    rest = url[len("sqlite:///") :]
    if rest.startswith("/") or rest.startswith(":memory:"):
        return url
    return f"sqlite:///{(config_file.parent / rest).absolute()}"


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
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(file),
            f"not valid TOML: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at {exc.start})",
        ) from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(str(file), "not valid TOML: values nested too deeply") from None
    return parse_config(data, env=env, path=file)


def _check_depth(document: Mapping[str, Any]) -> None:
    """:class:`ConfigError` naming the first value nested more than :data:`MAX_DEPTH` deep."""
    pending: list[tuple[str, object, int]] = [(name, v, 1) for name, v in document.items()]
    while pending:
        key, value, depth = pending.pop()
        if isinstance(value, Mapping | list) and depth > MAX_DEPTH:
            raise ConfigError(key, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, Mapping):
            pending.extend((f"{key}.{k}", v, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend((f"{key}[{i}]", v, depth + 1) for i, v in enumerate(value))
