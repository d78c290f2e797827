"""An emulated Kamstrup 382: the meter model (no I/O) and the line that serves it.

- :mod:`.model`, :mod:`.load`, :mod:`.tariff`: the state of one meter advancing with a clock
  (energy from a load, tariffs, hour counter, pulse input and output, demand peaks).
- :mod:`.settings`: what a meter is and the registers it starts with.
- :mod:`.server` (:class:`Emulator`), :mod:`.thread` (:class:`EmulatorThread`): meters served
  on TCP ports (:mod:`.tcp`) or pseudo-terminals (:mod:`.pty`); :mod:`.line`: what a line
  does with a request, paced at 300 baud, with :mod:`.faults` applied, logged as
  :class:`Exchange` s; :mod:`.pulses`: pulse out, live.

The line's names are imported lazily, so ``from kamstrup382.emulator import MeterModel`` never
pulls in asyncio servers or serial ports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kamstrup382.emulator.load import (
    ConstantLoad,
    CsvLoad,
    ExactLoad,
    HouseholdLoad,
    Load,
    parse_load,
)
from kamstrup382.emulator.model import MeterModel, PulseCallback, Snapshot
from kamstrup382.emulator.settings import MeterSettings
from kamstrup382.emulator.tariff import TariffSchedule

if TYPE_CHECKING:
    from kamstrup382.emulator.faults import Faults
    from kamstrup382.emulator.line import Exchange
    from kamstrup382.emulator.server import Emulator
    from kamstrup382.emulator.thread import EmulatorThread

__all__ = [
    "ConstantLoad",
    "CsvLoad",
    "Emulator",
    "EmulatorThread",
    "ExactLoad",
    "Exchange",
    "Faults",
    "HouseholdLoad",
    "Load",
    "MeterModel",
    "MeterSettings",
    "PulseCallback",
    "Snapshot",
    "TariffSchedule",
    "parse_load",
]

_LAZY = {
    "Emulator": "kamstrup382.emulator.server",
    "EmulatorThread": "kamstrup382.emulator.thread",
    "Exchange": "kamstrup382.emulator.line",
    "Faults": "kamstrup382.emulator.faults",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
