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
from kamstrup382.extras import MissingExtra, missing, require

__all__ = ["cli", "main"]

#: subcommand name -> (module under kamstrup382.cli, attribute, one-line help, the extra it
#: needs or None: see :mod:`kamstrup382.extras`)
COMMANDS: dict[str, tuple[str, str, str, str | None]] = {
    "decode": ("decode", "decode", "Decode a captured reply and print its registers.", None),
    "emulate": (
        "emulate",
        "emulate",
        "Serve emulated Kamstrup 382 meters on a pty or TCP.",
        None,
    ),
    "read": ("read", "read", "Read a meter on a serial port or TCP gateway.", None),
    "collect": (
        "collect",
        "collect",
        "Read the configured meters on a schedule and store them.",
        None,
    ),
    "export": ("export", "export", "Export stored readings or consumption as CSV or JSON.", None),
    "status": ("status", "status", "Show per-meter read health from the storage.", None),
    "serve": ("serve", "serve", "Serve the web dashboard over the storage.", "web"),
    "demo": ("demo", "demo", "Emulator + collector + dashboard in one command.", "web"),
    "pulses": ("pulses", "pulses", "Show live power from a meter's pulse output.", None),
    "config": ("config", "config", "Find, write and check the configuration file.", None),
    "service": ("service", "service", "Run k382 as a systemd service.", None),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (fast start, optional parts)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, *_) in COMMANDS.items() if _available(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _available(entry[0]):
            return None
        module_name, attribute, help_text, extra = entry
        if extra is not None and missing(extra) is not None:
            return _needs_extra(cmd_name, help_text, extra)
        module = importlib.import_module(f"kamstrup382.cli.{module_name}")
        command = getattr(module, attribute)
        assert isinstance(command, click.Command)
        return command


def _needs_extra(name: str, help_text: str, extra: str) -> click.Command:
    """A command whose extra is not installed: listed, and a usage error (exit 2) when run."""

    def fail(args: tuple[str, ...]) -> None:
        try:
            require(extra)
        except MissingExtra as exc:
            raise click.UsageError(str(exc)) from exc

    return click.Command(
        name,
        callback=fail,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=f"{help_text} (needs: pip install 'kamstrup382[{extra}]')",
        short_help=f"{help_text} (needs the [{extra}] extra)",
        context_settings={"ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )


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
