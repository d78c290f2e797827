"""A meter's pulse input in the collector's config: the keys of ``[[meters]]`` about pin 3.

::

    [[meters]]
    name = "house"
    port = "socket://192.168.1.50:4001"
    pulses = "gpio:/dev/gpiochip0:17"   # or "tcp://HOST:PORT" (k382 emulate --pulse-listen);
                                        # gpio:CHIP:LINE:rising for a rising edge
    pulse_constant = 1000               # imp/kWh, printed on the meter
    pulse_max_power = 20000             # W: pulses closer than this allows are glitches
                                        # (default: from the meter's type number once read)
    pulse_zero_after = "6m"             # silence read as 0 W (default: when one pulse would
                                        # mean under 10 W: 6 min at 1000 imp/kWh)
    power_interval = "5s"               # publish the power this often ...
    power_change = 0.2                  # ... and at once when it moves by this share
    tariff_output = "gpio:/dev/gpiochip0:27"  # pin 4, or "tcp://HOST:PORT[/METER]" (k382
                                        # emulate --control-listen)
    tariff_schedule = "22:00-06:00"     # tariff 2 in these ranges, 1 outside (and/or Home
                                        # Assistant's "Tariff" select)
    tariff_zone = "Europe/Copenhagen"   # the schedule's time zone (default: the system's)

The pulse keys need ``pulses``, the tariff keys ``tariff_output``; each bad value is a
:class:`~kamstrup382.errors.ConfigError` naming its dotted key (``meters[0].pulse_constant``).
Without ``tariff_zone`` the schedule follows the system's zone with its rules
(:func:`system_zone`), so a schedule in local time keeps to the wall clock across DST changes.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from functools import cache, partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kamstrup382 import settings as check
from kamstrup382.emulator.tariff import TariffSchedule
from kamstrup382.errors import ConfigError, UsageError
from kamstrup382.pulses.live import PulseSettings
from kamstrup382.pulses.sources import open_pulse_source
from kamstrup382.pulses.tariff import open_tariff_output

__all__ = ["PULSE_CHECKS", "TariffSettings", "pulse_settings", "system_zone", "tariff_settings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TariffSettings:
    """A meter's tariff output (``output``: ``gpio:CHIP:LINE`` or ``tcp://...``) and the
    schedule that drives it (``None``: only commands, from Home Assistant)."""

    output: str
    schedule: TariffSchedule | None = None


def _source(value: object, key: str) -> str:
    source = check.text(value, key).strip()
    try:
        open_pulse_source(source)
    except UsageError as exc:
        raise ConfigError(key, str(exc)) from None
    return source


def _number(value: object, key: str, *, low: float, high: float) -> float:
    """A number in ``(low, high]`` (text from the environment too)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low < number <= high:
        raise ConfigError(key, f"must be above {low:g} and at most {high:g}, got {value!r}")
    return number


def _output(value: object, key: str) -> str:
    output = check.text(value, key).strip()
    try:
        open_tariff_output(output)
    except UsageError as exc:
        raise ConfigError(key, str(exc)) from None
    return output


def _zone(value: object, key: str) -> tzinfo:
    name = check.text(value, key).strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(key, f"no time zone {name!r} (e.g. Europe/Copenhagen, UTC)") from None


def _named_zone(path: Path) -> ZoneInfo | None:
    """The zone a path into a ``zoneinfo`` directory names (``.../zoneinfo/Europe/Copenhagen``),
    by that name if this Python knows it; ``None`` for any other path."""
    parts = path.parts
    if "zoneinfo" not in parts:
        return None
    name = "/".join(parts[len(parts) - parts[::-1].index("zoneinfo") :])
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone_file(path: Path, name: str) -> ZoneInfo:
    """The zone in the TZif file at ``path``, shown as ``name``."""
    return _zone_of(path.read_bytes(), name)


@cache
def _zone_of(data: bytes, name: str) -> ZoneInfo:
    # one object per file content: zones compare by identity (as ``ZoneInfo(key)`` is cached),
    # and a reload must not see every scheduled meter as changed
    return ZoneInfo.from_file(io.BytesIO(data), key=name)


def system_zone(
    environ: Mapping[str, str] = os.environ, localtime: Path = Path("/etc/localtime")
) -> tzinfo:
    """The system's time zone, with its rules (its DST changes, not today's offset).

    ``TZ`` when set (``Europe/Copenhagen``, ``:Europe/Copenhagen``, or a zone file's path),
    else what ``localtime`` is: a link into a ``zoneinfo`` directory is the zone it names, a
    plain file (or a link elsewhere) the zone in that file. Else UTC, with a warning. A ``TZ``
    that names no zone file (a POSIX rule such as ``CET-1CEST``) is a ``ConfigError`` on
    ``TZ``: the caller names the key that would spare it.
    """
    given = environ.get("TZ", "").strip().removeprefix(":")
    if given:
        if given.startswith("/"):
            path = Path(given)
            try:
                return _named_zone(path) or _zone_file(path, given)
            except (OSError, ValueError):
                raise ConfigError("TZ", f"{given!r} is not a time zone file") from None
        try:
            return ZoneInfo(given)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ConfigError(
                "TZ", f"{given!r} is not an IANA time zone name (e.g. Europe/Copenhagen)"
            ) from None
    try:
        if localtime.is_symlink():
            target = Path(os.path.normpath(localtime.parent / os.readlink(localtime)))
            named = _named_zone(target)
            if named is not None:
                return named
        return _zone_file(localtime, str(localtime))
    except (OSError, ValueError) as exc:
        log.warning("no time zone from TZ or %s (%s): using UTC", localtime, exc)
        return UTC


PULSE_CHECKS: dict[str, Callable[[object, str], Any]] = {
    "pulses": _source,
    "pulse_constant": partial(check.integer, low=1, high=1_000_000),
    "pulse_max_power": partial(_number, low=0, high=10_000_000),
    "pulse_zero_after": check.seconds,
    "power_interval": partial(check.seconds, allow_zero=True),
    "power_change": partial(_number, low=0, high=10),
    "tariff_output": _output,
    "tariff_schedule": check.text,
    "tariff_zone": _zone,
}


def tariff_settings(values: Mapping[str, Any], prefix: str) -> TariffSettings | None:
    """The tariff output of a meter whose checked keys are ``values``."""
    if "tariff_output" not in values:
        for name in ("tariff_schedule", "tariff_zone"):
            if name in values:
                raise ConfigError(f"{prefix}.{name}", 'needs tariff_output = "gpio:CHIP:LINE"')
        return None
    schedule = None
    if "tariff_schedule" in values:
        zone = values.get("tariff_zone")
        if zone is None:
            try:
                zone = system_zone()
            except ConfigError as exc:
                raise ConfigError(
                    f"{prefix}.tariff_zone",
                    f"not given, and the system's TZ {exc.problem}: name the zone",
                ) from None
        try:
            schedule = TariffSchedule.parse(values["tariff_schedule"], zone=zone)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}.tariff_schedule", exc.problem) from None
    elif "tariff_zone" in values:
        raise ConfigError(f"{prefix}.tariff_zone", "needs tariff_schedule")
    return TariffSettings(values["tariff_output"], schedule)


_FIELDS = {
    "pulses": "source",
    "pulse_constant": "constant",
    "pulse_max_power": "max_power_w",
    "pulse_zero_after": "zero_after",
    "power_interval": "power_interval",
    "power_change": "power_change",
}


def pulse_settings(values: Mapping[str, Any], prefix: str) -> PulseSettings | None:
    """The pulse input of a meter whose checked keys are ``values`` (``None``: no ``pulses``)."""
    given = {name: values[name] for name in _FIELDS if name in values}
    if "pulses" not in given:
        for name in given:
            raise ConfigError(f"{prefix}.{name}", 'needs pulses = "gpio:CHIP:LINE" or "tcp://..."')
        return None
    return PulseSettings(**{_FIELDS[name]: value for name, value in given.items()})
