"""Which protocol a meter speaks, in the collector's config: the keys of ``[[meters]]`` about
KMP (the 382J, 382Jx3, 382Lx7 and 382M; see ``docs/kmp.md``).

::

    [collector]
    protocol = "iec"        # the default of every meter: iec | kmp | auto

    [[meters]]
    name = "flat"
    port = "/dev/ttyUSB0"
    protocol = "kmp"        # iec: IEC 61107 mode A (the 685-382, the 382C), 300 baud 7E1
                            # kmp: the Kamstrup Meter Protocol
                            # auto: mode A, else KMP at 9600 8N1, tried at the first readout
                            # and remembered (in the storage: a restart does not try again)
    baud = 9600             # KMP only: the optical port's rate (default 9600)
    stop_bits = 1           # KMP only: 2 for an 8N2 line (MULTICAL, some heads; a serial
                            # device or pyserial URL: a socket:// gateway sets its own line)
    registers = ["energy", "power", "voltage_l1"]  # KMP only: what each readout asks for,
                            # by name (default: the 382's whole set, docs/kmp.md)

``line`` and ``bcc`` are mode A's and refused with ``protocol = "kmp"``; ``baud``,
``stop_bits`` and ``registers`` are KMP's and refused with ``protocol = "iec"``. Every bad
value is a :class:`~kamstrup382.errors.ConfigError` naming its dotted key
(``meters[2].registers[1]``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from kamstrup382 import settings as check
from kamstrup382.errors import ConfigError
from kamstrup382.protocol.kmp import KMP_382_REGISTERS, KMP_REGISTER_BY_NAME

__all__ = ["KMP_CHECKS", "KmpSettings", "MeterProtocol", "kmp_settings"]


class MeterProtocol(enum.StrEnum):
    IEC = "iec"
    KMP = "kmp"
    AUTO = "auto"


#: The KMP line rates a meter may be configured with (a 382's optical port is 9600; 1200 is
#: MULTICAL's, 2400 and 19200 some heads').
KMP_BAUDS = (1200, 2400, 4800, 9600, 19200)


@dataclass(frozen=True, slots=True)
class KmpSettings:
    """A KMP meter's line (rate, stop bits) and the registers each readout asks for, by
    name, in order."""

    baud: int = 9600
    stop_bits: int = 1
    registers: tuple[str, ...] = tuple(r.name for r in KMP_382_REGISTERS)

    @property
    def register_ids(self) -> tuple[int, ...]:
        return tuple(KMP_REGISTER_BY_NAME[name].id for name in self.registers)


def _baud(value: object, key: str) -> int:
    baud = check.integer(value, key, low=1, high=115_200)
    if baud not in KMP_BAUDS:
        raise ConfigError(key, f"expected one of {', '.join(map(str, KMP_BAUDS))}, got {baud}")
    return baud


def _registers(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(key, 'expected a list of register names, e.g. ["energy", "power"]')
    names: list[str] = []
    for index, item in enumerate(value):
        name = check.text(item, f"{key}[{index}]").strip()
        if name not in KMP_REGISTER_BY_NAME:
            known = ", ".join(KMP_REGISTER_BY_NAME)
            raise ConfigError(f"{key}[{index}]", f"no KMP register {name!r} (known: {known})")
        if name in names:
            raise ConfigError(f"{key}[{index}]", f"{name!r} is asked for twice")
        names.append(name)
    return tuple(names)


KMP_CHECKS: dict[str, Callable[[object, str], Any]] = {
    "protocol": partial(check.choice, MeterProtocol),
    "baud": _baud,
    "stop_bits": partial(check.integer, low=1, high=2),
    "registers": _registers,
}
_KMP_ONLY = ("baud", "stop_bits", "registers")
_IEC_ONLY = ("line", "bcc")


def kmp_settings(
    values: Mapping[str, Any], prefix: str, default: MeterProtocol
) -> tuple[MeterProtocol, KmpSettings | None]:
    """The protocol of a meter whose checked keys are ``values`` and, unless it is mode A
    only, its KMP settings (``default``: the ``[collector]`` table's protocol)."""
    protocol: MeterProtocol = values.get("protocol", default)
    wrong: tuple[str, ...] = ()
    if protocol is MeterProtocol.KMP:
        wrong = _IEC_ONLY
    elif protocol is MeterProtocol.IEC:
        wrong = _KMP_ONLY
    for name in wrong:
        if name in values:
            raise ConfigError(f"{prefix}.{name}", f'not a setting of protocol = "{protocol}"')
    if protocol is MeterProtocol.IEC:
        return protocol, None
    given = {name: values[name] for name in _KMP_ONLY if name in values}
    return protocol, KmpSettings(**given)
