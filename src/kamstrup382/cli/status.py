"""``k382 status``: per meter, the last success, the last error and the success rate.

Reads the storage named by ``--storage``, the config's ``[storage] url`` or the default.
``--json`` prints a JSON array, one object per meter. Exit status: 0 done, 1 the storage failed,
2 a bad configuration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from kamstrup382.cli.export import config_options, open_configured_storage
from kamstrup382.errors import ConfigError, Kamstrup382Error, UsageError
from kamstrup382.storage.records import MeterStatus

__all__ = ["status", "status_object", "status_table"]


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def status_object(s: MeterStatus) -> dict[str, Any]:
    """One meter's status as a JSON-ready object."""
    return {
        "meter": s.meter,
        "last_success": _iso(s.last_success),
        "last_error": None
        if s.last_error is None
        else {"at": _iso(s.last_error), "kind": s.last_error_kind, "message": s.last_error_message},
        "successes": s.successes,
        "failures": s.failures,
        "success_rate": s.success_rate,
    }


def _short(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def status_table(statuses: list[MeterStatus]) -> str:
    """A plain text table, one line per meter."""
    header = ("METER", "LAST SUCCESS", "SUCCESS RATE", "LAST ERROR")
    lines = []
    for s in statuses:
        rate = s.success_rate
        shown = "-" if rate is None else f"{rate:.1%} ({s.successes}/{s.successes + s.failures})"
        error = "-"
        if s.last_error is not None:
            error = f"{_short(s.last_error)} {s.last_error_kind}: {s.last_error_message}"
        lines.append((s.meter, _short(s.last_success), shown, error))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in [header, *lines]
    )


@click.command("status")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per meter.")
def status(*, config_path: Path | None, storage_url: str | None, as_json: bool) -> int:
    """Show per meter: last success, last error, success rate."""
    try:
        with open_configured_storage(config_path, storage_url) as storage:
            statuses = storage.status()
    except ConfigError as exc:
        click.echo(f"config error: {exc}", err=True)
        return 2
    except UsageError as exc:  # a missing extra, say: exit 2, as every usage error
        click.echo(f"error: {exc}", err=True)
        return 2
    except Kamstrup382Error as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    if as_json:
        click.echo(json.dumps([status_object(s) for s in statuses], indent=2))
    elif statuses:
        click.echo(status_table(statuses))
    else:
        click.echo("no attempts stored yet", err=True)
    return 0
