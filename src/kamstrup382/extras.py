"""The optional parts of the package, and the error that names the extra to install.

``pip install kamstrup382`` installs the core: the protocol, the readers, the emulator, the
collector with SQLite, export and the command line, on pure-Python dependencies only (click,
pyserial, platformdirs), so that it installs wherever Python runs (a 32-bit Raspberry Pi OS
included). Everything else is an extra:

==============  ================================================  ===========================
extra           what it enables                                   what it installs
==============  ================================================  ===========================
``postgres``    PostgreSQL storage (``postgresql://`` URLs)       psycopg (its binary build
                                                                  where a wheel exists)
``mqtt``        the ``[mqtt]`` output, Home Assistant discovery   aiomqtt
``prometheus``  the ``[prometheus]`` output                       prometheus-client
``influxdb``    the ``[influxdb]`` output                         httpx
``web``         the dashboard (``k382 serve``, ``k382 demo``)     starlette, uvicorn, jinja2
``fast``        uvloop's event loop for the collector             uvloop
``gpio``        pulses from a GPIO line (``gpio:CHIP:LINE``)      gpiod (libgpiod v2)
``all``         all of the above
==============  ================================================  ===========================

Code that needs an extra calls :func:`require` before it imports the extra's modules; a
missing one is a :class:`MissingExtra` (a usage error: exit status 2) that says what to
install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from kamstrup382.errors import UsageError

__all__ = ["EXTRAS", "Extra", "MissingExtra", "missing", "require"]


@dataclass(frozen=True, slots=True)
class Extra:
    """One extra: its name, what it enables (for the message) and the modules it brings."""

    name: str
    enables: str
    modules: tuple[str, ...]


EXTRAS: dict[str, Extra] = {
    extra.name: extra
    for extra in (
        Extra("postgres", "PostgreSQL storage", ("psycopg",)),
        Extra("mqtt", "the MQTT output", ("aiomqtt",)),
        Extra("prometheus", "the Prometheus output", ("prometheus_client",)),
        Extra("influxdb", "the InfluxDB output", ("httpx",)),
        Extra("web", "the dashboard", ("starlette", "uvicorn", "jinja2")),
        Extra("fast", "uvloop's event loop", ("uvloop",)),
        Extra("gpio", "reading pulses from a GPIO line", ("gpiod",)),
    )
}


class MissingExtra(UsageError):
    """A feature needs an extra that is not installed; the message says what to install."""

    kind = "extra"

    def __init__(self, extra: Extra, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"{extra.enables} needs: pip install 'kamstrup382[{extra.name}]' "
            f"({module} is not installed)"
        )


def missing(name: str) -> str | None:
    """The first module of extra ``name`` that is not installed, or ``None``."""
    for module in EXTRAS[name].modules:
        if importlib.util.find_spec(module) is None:
            return module
    return None


def require(name: str) -> None:
    """Raise :class:`MissingExtra` unless every module of extra ``name`` is installed."""
    module = missing(name)
    if module is not None:
        raise MissingExtra(EXTRAS[name], module)
