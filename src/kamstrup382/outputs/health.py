"""What an output says of itself while it runs: its state, since when, why, and its counters.

The collector's outputs live in the collector's process; ``k382 status`` runs in another. So
an output that has a state of its own (MQTT: connected, unreachable, login refused) writes it
to a small JSON file whenever it changes (:func:`write_health`, atomically, readable by its
owner only), and ``k382 status`` reads it (:func:`read_health`). The Prometheus output reads
the same :class:`OutputHealth` straight from the outputs of its own process.

Where the file is: ``state_file`` of the output's table, else beside a SQLite database
(``readings.sqlite`` -> ``readings.sqlite.mqtt.json``, :func:`default_state_file`). A
PostgreSQL storage has no file of its own: name one, or see the state in the metrics and the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kamstrup382.errors import ConfigError

__all__ = [
    "CONNECTED",
    "LOGIN_REFUSED",
    "STARTING",
    "STATES",
    "STOPPED",
    "UNREACHABLE",
    "KeepsState",
    "OutputHealth",
    "default_state_file",
    "read_health",
    "write_health",
]

log = logging.getLogger(__name__)

STARTING, CONNECTED, UNREACHABLE, LOGIN_REFUSED, STOPPED = (
    "starting",
    "connected",
    "unreachable",
    "login_refused",
    "stopped",
)
#: The states of an output that talks to a server (MQTT, InfluxDB), in its health.
STATES = (STARTING, CONNECTED, UNREACHABLE, LOGIN_REFUSED, STOPPED)

#: A state file larger than this is not one of ours.
_MAX_FILE = 64 * 1024


@dataclass(frozen=True, slots=True)
class OutputHealth:
    """One output's state at one moment.

    ``state`` is one of ``states`` (the output's own list, for an enumeration in the metrics);
    ``detail`` the last problem's text; ``retry_at`` when the next attempt is due (if waiting);
    ``counters`` the output's running totals by name (``login_refusals``, ...).
    """

    output: str
    state: str
    states: tuple[str, ...]
    since: datetime
    detail: str | None = None
    retry_at: datetime | None = None
    counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.state not in self.states:
            raise ValueError(f"state {self.state!r} is not one of {self.states}")

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "state": self.state,
            "states": list(self.states),
            "since": self.since.astimezone(UTC).isoformat(),
            "detail": self.detail,
            "retry_at": None
            if self.retry_at is None
            else self.retry_at.astimezone(UTC).isoformat(),
            "counters": dict(self.counters),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputHealth:
        """The inverse of :meth:`to_json`; :class:`ValueError` (or ``KeyError``,
        ``TypeError``) for anything else."""
        retry_at = data.get("retry_at")
        counters = data.get("counters") or {}
        if not isinstance(counters, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in counters.items()
        ):
            raise ValueError("counters must map names to integers")
        detail = data.get("detail")
        return cls(
            output=str(data["output"]),
            state=str(data["state"]),
            states=tuple(str(s) for s in data["states"]),
            since=datetime.fromisoformat(str(data["since"])),
            detail=None if detail is None else str(detail),
            retry_at=None if retry_at is None else datetime.fromisoformat(str(retry_at)),
            counters=MappingProxyType(dict(counters)),
        )


def default_state_file(storage_url: str, output: str) -> Path | None:
    """``<database>.<output>.json`` beside a SQLite database; ``None`` for other storages."""
    if not storage_url.startswith("sqlite:///"):
        return None
    from kamstrup382.storage.url import sqlite_path  # noqa: PLC0415 - only for SQLite

    try:
        path, _ = sqlite_path(storage_url)
    except ConfigError:
        return None
    return path.with_name(f"{path.name}.{output}.json")


def write_health(path: Path, health: OutputHealth) -> None:
    """Replace ``path`` with ``health`` as JSON, atomically, mode 0600 (``OSError`` on failure)."""
    text = json.dumps(health.to_json(), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_health(path: Path) -> OutputHealth | None:
    """The health in ``path``; ``None`` when there is no such file. :class:`ValueError` when it
    is not a state file, ``OSError`` when it cannot be read."""
    try:
        with path.open("rb") as source:
            data = source.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return None
    if len(data) > _MAX_FILE:
        raise ValueError(f"{path} is larger than {_MAX_FILE} bytes: not a state file")
    try:
        parsed = json.loads(data.decode("utf-8"))
        if not isinstance(parsed, dict):
            raise ValueError("not a JSON object")
        return OutputHealth.from_json(parsed)
    except (UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a state file: {exc}") from exc


class KeepsState:
    """What an output that talks to a server keeps of its state (one of :data:`STATES`),
    since when, why, and when it tries again, with the state file ``k382 status`` reads.

    The output calls :meth:`_keep_state` in its ``__init__`` and :meth:`_set_state` on every
    change, and gives its running totals in :meth:`_counters`.
    """

    name: str
    state: str
    last_error: str | None
    _since: datetime
    _retry_at: datetime | None
    _state_file: Path | None
    _state_file_failed: bool

    def _keep_state(self, state_file: str | None) -> None:
        self.state = STARTING
        self.last_error = None
        self._since = datetime.now(UTC)
        self._retry_at = None
        self._state_file = None if state_file is None else Path(state_file)
        self._state_file_failed = False

    def _counters(self) -> Mapping[str, int]:
        raise NotImplementedError

    def health(self) -> OutputHealth:
        return OutputHealth(
            output=self.name,
            state=self.state,
            states=STATES,
            since=self._since,
            detail=self.last_error if self.state in (UNREACHABLE, LOGIN_REFUSED) else None,
            retry_at=self._retry_at,
            counters=MappingProxyType(dict(self._counters())),
        )

    async def _set_state(
        self, state: str, detail: str | None = None, retry_in: float | None = None
    ) -> None:
        """Enter ``state`` (``retry_in``: seconds to the next try) and write the state file."""
        now = datetime.now(UTC)
        if state != self.state:
            self.state = state
            self._since = now
        if detail is not None:
            self.last_error = detail
        self._retry_at = None if retry_in is None else now + timedelta(seconds=retry_in)
        path = self._state_file
        if path is None:
            return
        try:
            await asyncio.to_thread(write_health, path, self.health())
        except OSError as exc:
            if not self._state_file_failed:  # once: the metrics and the log still say it
                log.warning("%s: cannot write the state file %s: %s", self.name, path, exc)
            self._state_file_failed = True
        else:
            self._state_file_failed = False
