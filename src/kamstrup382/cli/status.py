"""``k382 status``: per meter, the last success, the last error and the success rate.

Reads the storage named by ``--storage``, the config's ``[storage] url`` or the default.
``--json`` prints a JSON array, one object per meter. Exit status: 0 done, 1 the storage failed,
2 a bad configuration.

Below the table, the state of the collector's MQTT and InfluxDB outputs (connected,
unreachable, login_refused, ...), from the state file each keeps (``[mqtt] state_file``,
``[influxdb] state_file``, by default beside a SQLite database:
:mod:`kamstrup382.outputs.health`). Without a state file (PostgreSQL and no
``state_file``) the state is in the collector's log and metrics only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from kamstrup382.cli.database import choose_database, open_existing, say_which
from kamstrup382.cli.export import config_options
from kamstrup382.errors import ConfigError, Kamstrup382Error, UsageError
from kamstrup382.outputs.health import OutputHealth, default_state_file, read_health
from kamstrup382.storage.records import MeterStatus

#: The outputs with a state of their own, and how messages name them.
_STATEFUL = ("mqtt", "influxdb")
_SHOWN = {"mqtt": "MQTT", "influxdb": "InfluxDB"}

__all__ = ["output_lines", "status", "status_object", "status_table"]


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


def output_lines(healths: list[OutputHealth]) -> str:
    """The outputs' states as a plain text table, one line per output."""
    rows = [("OUTPUT", "STATE", "SINCE", "DETAIL")]
    for h in healths:
        detail = h.detail or "-"
        if h.retry_at is not None and h.state != "connected":
            detail += f" (next try {_short(h.retry_at)})"
        rows.append((h.output, h.state, _short(h.since), detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )


def _state_file(
    output: str, sections: Mapping[str, Any] | None, storage_url: str
) -> tuple[bool, Path | None]:
    """Whether the config has the output's table (without a config: unknown, False), and its
    state file: the table's ``state_file``, else beside a SQLite database (``None``: none)."""
    if sections is not None:
        if output not in sections:
            return False, None
        named: str | None
        if output == "mqtt":
            from kamstrup382.outputs.mqtt_settings import MqttSettings  # noqa: PLC0415 - on use

            named = MqttSettings.parse(sections[output]).state_file
        else:
            from kamstrup382.outputs.influxdb_settings import InfluxSettings  # noqa: PLC0415

            named = InfluxSettings.parse(sections[output]).state_file
        if named is not None:
            return True, Path(named)
    return sections is not None, default_state_file(storage_url, output)


@click.command("status")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per meter.")
def status(*, config_path: Path | None, storage_url: str | None, as_json: bool) -> int:
    """Show per meter: last success, last error, success rate."""
    try:
        chosen = choose_database(config_path, storage_url)
        say_which(chosen, config_path, storage_url)
        sections = None if chosen.config is None else chosen.config.sections
        url = chosen.url
        state_files = {output: _state_file(output, sections, url) for output in _STATEFUL}
        with open_existing(url) as storage:  # a reading command: never creates one
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
    healths: list[OutputHealth] = []
    for output, (_, state_file) in state_files.items():
        if state_file is None:
            continue
        try:
            health = read_health(state_file)
        except (OSError, ValueError) as exc:
            click.echo(f"warning: cannot read the {_SHOWN[output]} state: {exc}", err=True)
        else:
            healths += [] if health is None else [health]
    if as_json:
        click.echo(json.dumps([status_object(s) for s in statuses], indent=2))
    elif statuses:
        click.echo(status_table(statuses))
    else:
        click.echo("no attempts stored yet", err=True)
    if healths and not as_json:
        click.echo("")
        click.echo(output_lines(healths))
    if not as_json:
        known = {h.output for h in healths}
        for output, (configured, state_file) in state_files.items():
            if not configured or output in known:
                continue
            where = (
                f"no state file: name one in [{output}] state_file"
                if state_file is None
                else (
                    f"no state in {state_file} yet "
                    f"(written when the collector's {_SHOWN[output]} output starts)"
                )
            )
            click.echo(f"\n{output}: state unknown: {where}")
    return 0
