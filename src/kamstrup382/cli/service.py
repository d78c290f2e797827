"""``k382 service unit``: a systemd unit for the collector or the dashboard, printed.

    k382 service unit > /etc/systemd/system/k382-collect.service
    k382 service unit serve > /etc/systemd/system/k382-serve.service
    systemctl daemon-reload && systemctl enable --now k382-collect

The unit runs the command as a ``Type=notify`` service: it says when it is ready, keeps a
status line (the last cycle's counts) and, with ``WatchdogSec``, pings systemd's watchdog from
its event loop, so that a hung process is restarted. It runs as a user of its own
(``DynamicUser``, or ``--user NAME``) in the ``dialout`` group (serial ports), with its
configuration in ``/etc/k382`` and its database in the state directory ``/var/lib/k382``
(owner only), and the hardening that fits a program reading serial ports and TCP gateways:
a read-only system, no home, no new privileges, no capabilities, serial devices only.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import click

__all__ = ["service", "unit_text"]

#: Character devices a meter can be on: USB serial adapters and optical heads (ttyUSB, ttyACM),
#: a Raspberry Pi's UARTs (ttyAMA, and ttyS for the mini UART behind /dev/serial0).
SERIAL_DEVICES = ("char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-ttyS")
DEFAULT_CONFIG = Path("/etc/k382/k382.toml")
#: where ProtectHome=yes would hide an installed k382
_HOMES = ("/home/", "/root/", "/run/user/")

_HARDENING = """\
ProtectSystem=strict
PrivateTmp=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
"""


def _k382() -> str:
    """The command that runs this k382: its script, or this Python with ``-m kamstrup382``."""
    script = shutil.which("k382")
    if script is not None:
        return str(Path(script).resolve())
    return f"{shlex.quote(sys.executable)} -m kamstrup382"


def unit_text(
    command: str,
    *,
    config: Path = DEFAULT_CONFIG,
    user: str | None = None,
    executable: str | None = None,
    watchdog: int = 120,
) -> str:
    """The unit for ``k382 collect`` or ``k382 serve`` (``command``)."""
    executable = executable or _k382()
    if command == "collect":
        description = "Kamstrup 382 meter collector (k382 collect)"
        devices = "DevicePolicy=closed\n" + "".join(
            f"DeviceAllow={device} rw\n" for device in SERIAL_DEVICES
        )
    else:
        description = "Kamstrup 382 dashboard (k382 serve)"
        devices = "PrivateDevices=yes\n"
    who = f"User={user}\n" if user else "DynamicUser=yes\n"
    if command == "collect":
        who += "SupplementaryGroups=dialout\n"
    watchdog_line = f"WatchdogSec={watchdog}\n" if watchdog else ""
    home = "ProtectHome=yes\n"
    if executable.startswith(_HOMES):
        home = (
            "# k382 is installed under a home directory, which the service must read: better\n"
            "# install it elsewhere (python3 -m venv /opt/k382) and use ProtectHome=yes\n"
            "ProtectHome=read-only\n"
        )
    exec_start = f"{executable} {command} --config {shlex.quote(str(config))}"
    # the collector takes a changed meter list on SIGHUP: systemctl reload k382
    reload_line = "ExecReload=/bin/kill -HUP $MAINPID\n" if command == "collect" else ""
    return (
        "[Unit]\n"
        f"Description={description}\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        f"ExecStart={exec_start}\n"
        f"{reload_line}"
        "Restart=on-failure\n"
        "RestartSec=10\n"
        "TimeoutStopSec=60\n"
        f"{watchdog_line}"
        f"{who}"
        "ConfigurationDirectory=k382\n"
        "StateDirectory=k382\n"
        "StateDirectoryMode=0700\n"
        # the default SQLite file (<user data dir>/kamstrup382/readings.sqlite) and the default
        # config search land in the state and configuration directories
        "Environment=XDG_DATA_HOME=%S XDG_CONFIG_HOME=%E PYTHONUNBUFFERED=1\n"
        f"{devices}"
        f"{home}"
        f"{_HARDENING}"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


@click.group("service")
def service() -> None:
    """Run k382 as a systemd service."""


@service.command("unit")
@click.argument("command", type=click.Choice(["collect", "serve"]), default="collect")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The config file the service reads.",
)
@click.option("--user", help="Run as this (existing) user instead of a dynamic one.")
@click.option("--exec", "executable", help="The k382 command to run (default: this one).")
@click.option(
    "--watchdog",
    type=click.IntRange(min=0, max=86400),
    default=120,
    show_default=True,
    help="WatchdogSec: restart the service if it stops answering this long (0: none).",
)
def unit(
    command: str, config: Path, user: str | None, executable: str | None, watchdog: int
) -> None:
    """Print a systemd unit for ``k382 collect`` (default) or ``k382 serve``."""
    if not config.is_absolute():
        raise click.BadParameter(
            "must be an absolute path (systemd starts the service in /)", param_hint="--config"
        )
    click.echo(
        unit_text(command, config=config, user=user, executable=executable, watchdog=watchdog),
        nl=False,
    )
