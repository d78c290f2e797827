"""The ``k382`` command line. Each subcommand lives in its own module and is loaded on use.

``main(argv=None)`` is testable without a shell: ``main(["decode", "--json", path])``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

import click

from kamstrup382 import __version__

__all__ = ["cli", "main"]

#: subcommand name -> (module under kamstrup382.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "decode": ("decode", "decode", "Decode a captured reply and print its registers."),
    "emulate": ("emulate", "emulate", "Serve emulated Kamstrup 382 meters on a pty or TCP."),
    "read": ("read", "read", "Read a meter on a serial port or TCP gateway."),
    "collect": ("collect", "collect", "Read the configured meters on a schedule and store them."),
    "export": ("export", "export", "Export stored readings or consumption as CSV or JSON."),
    "status": ("status", "status", "Show per-meter read health from the storage."),
    "serve": ("serve", "serve", "Serve the web dashboard over the storage."),
    "demo": ("demo", "demo", "Emulator + collector + dashboard in one command."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (fast start, optional parts)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _, _) in COMMANDS.items() if _available(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _available(entry[0]):
            return None
        module = importlib.import_module(f"kamstrup382.cli.{entry[0]}")
        command = getattr(module, entry[1])
        assert isinstance(command, click.Command)
        return command


def _available(module: str) -> bool:
    return importlib.util.find_spec(f"kamstrup382.cli.{module}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="k382")
def cli() -> None:
    """Kamstrup 382 meters over IEC 61107 / IEC 62056-21 mode A."""


#: The usage error that is the help (click 8.2+ raises it for a group given no command).
_HELP_ERRORS: tuple[type[click.UsageError], ...] = tuple(
    getattr(click.exceptions, name)
    for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of exiting (for tests)."""
    try:
        result: Any = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        if isinstance(exc, _HELP_ERRORS):  # `k382` alone: the help, as asked
            exc.show()
            return exc.exit_code
        # one line, like every other error: what is wrong, and where to look for help
        hint = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
        click.echo(f"error: usage: {exc.format_message()}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
