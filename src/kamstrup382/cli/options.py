"""Checks of command-line values the subcommands share: numbers that are finite and in range,
durations no longer than any config key accepts. A bad value is click's usage error naming the
option, which :func:`kamstrup382.cli.main` reports in one line with exit status 2."""

from __future__ import annotations

import math
from typing import Any

import click

from kamstrup382.errors import ConfigError
from kamstrup382.settings import MAX_DURATION, parse_duration

__all__ = ["Number", "check_duration", "seconds"]


class Number(click.FloatRange):
    """A float in a range that is never NaN nor infinite (``FloatRange`` lets NaN through, and
    infinity when it has no upper bound)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def seconds(*, allow_zero: bool = False) -> Number:
    """Seconds: above zero (or from zero), at most :data:`~kamstrup382.settings.MAX_DURATION`."""
    return Number(min=0, min_open=not allow_zero, max=MAX_DURATION.total_seconds())


def check_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option callback: ``value`` must be a duration (``"15m"``, ``"90s"``, seconds); it is
    kept as written."""
    if value is not None:
        try:
            parse_duration(value, param.opts[0])
        except ConfigError as exc:
            raise click.BadParameter(exc.problem, ctx, param) from None
    return value
