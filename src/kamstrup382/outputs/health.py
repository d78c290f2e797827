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

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kamstrup382.errors import ConfigError

__all__ = ["OutputHealth", "default_state_file", "read_health", "write_health"]

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
