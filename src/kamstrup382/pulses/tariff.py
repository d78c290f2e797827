"""The module side of pin 4: a tariff output that shorts the meter's tariff input (tariff 2) or
leaves it open (tariff 1), and the board where what was asked and what was set meet.

Outputs (``tariff_output`` of a meter):

- ``tcp://HOST:PORT`` (``tcp://HOST:PORT/N`` for the emulator's meter N): the emulator's control
  port (``k382 emulate --control-listen``): one line ``[N] tariff 1|2``, answered ``ok: ...``
  or ``error: ...``. A connection per command, so an emulator restarted meanwhile is no harm.
- ``gpio:CHIP:LINE`` (``gpio:/dev/gpiochip0:27``): a Linux GPIO output through libgpiod v2
  (the ``gpio`` extra) driving the optocoupler whose transistor shorts pin 4 to pin 1: active
  (high) for tariff 2. Hardware only: these machines have no GPIO chip; what is tested here is
  the clear error naming the missing extra or chip.

:class:`TariffBoard` holds, per meter, the tariff the module last set (``None`` before the
first) and tells its listeners when it changes; commands from outside (Home Assistant's
``select``) go to it and wait there for the collector's tariff control.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from kamstrup382.errors import Kamstrup382Error, UsageError
from kamstrup382.extras import require

__all__ = [
    "TARIFFS",
    "GpioTariffOutput",
    "TariffBoard",
    "TariffError",
    "TariffOutput",
    "TariffState",
    "TcpTariffOutput",
    "open_tariff_output",
]

TARIFFS = (1, 2)
#: Seconds for one command to the emulator's control port (connect, send, answer).
TIMEOUT = 5.0


class TariffError(Kamstrup382Error):
    """A tariff output could not set the tariff (unreachable, refused)."""

    kind = "tariff"


class TariffOutput(Protocol):
    name: str

    def check(self) -> None: ...

    async def set(self, tariff: int) -> None: ...

    async def close(self) -> None: ...


def open_tariff_output(text: str) -> TariffOutput:
    """The output ``text`` names; :class:`UsageError` saying what is wrong with it."""
    if text.startswith("tcp://"):
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"tariff output {text!r}: {exc}") from exc
        meter = parts.path.strip("/")
        if not parts.hostname or not port or (meter and not meter.isdigit()):
            raise UsageError(f"tariff output {text!r}: expected tcp://HOST:PORT[/METER]")
        return TcpTariffOutput(parts.hostname, port, int(meter) if meter else None)
    if text.startswith("gpio:"):
        parts_ = text[len("gpio:") :].split(":")
        if len(parts_) != 2 or not parts_[0] or not parts_[1].isdigit():
            raise UsageError(f"tariff output {text!r}: expected gpio:CHIP:LINE")
        return GpioTariffOutput(parts_[0], int(parts_[1]))
    raise UsageError(f"tariff output {text!r}: expected tcp://HOST:PORT or gpio:CHIP:LINE")


class TcpTariffOutput:
    """The emulator's control port (see the module doc)."""

    def __init__(self, host: str, port: int, meter: int | None = None) -> None:
        self.host = host
        self.port = port
        self.meter = meter
        self.name = f"tcp://{host}:{port}" + (f"/{meter}" if meter else "")

    def check(self) -> None:
        """Nothing to check before the first command."""

    async def set(self, tariff: int) -> None:
        command = f"{self.meter} tariff {tariff}" if self.meter else f"tariff {tariff}"
        try:
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(command.encode() + b"\n")
                    await writer.drain()
                    reply = (await reader.readline()).decode("utf-8", "replace").strip()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise TariffError(f"tariff output {self.name}: {exc or 'timed out'}") from exc
        if not reply.startswith("ok"):
            raise TariffError(f"tariff output {self.name}: {reply or 'no answer'}")

    async def close(self) -> None:
        """No connection is kept."""


class GpioTariffOutput:
    """A GPIO output line through libgpiod v2 (hardware only: see the module doc)."""

    def __init__(self, chip: str, line: int) -> None:
        self.chip = chip
        self.line = line
        self.name = f"gpio:{chip}:{line}"
        self._request: Any = None

    def check(self) -> None:
        """The ``gpio`` extra and the chip are there (:class:`UsageError` naming what is not)."""
        require("gpio")
        if not os.path.exists(self.chip):
            raise UsageError(f"tariff output {self.name}: no GPIO chip {self.chip}")

    async def set(self, tariff: int) -> None:
        self.check()
        import gpiod  # noqa: PLC0415 - the gpio extra
        from gpiod.line import Direction, Value  # noqa: PLC0415

        value = Value.ACTIVE if tariff == 2 else Value.INACTIVE
        try:
            if self._request is None:
                settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=value)
                self._request = gpiod.request_lines(
                    self.chip, consumer="k382-tariff", config={self.line: settings}
                )
            else:
                self._request.set_value(self.line, value)
        except (OSError, ValueError) as exc:
            raise TariffError(f"tariff output {self.name}: {exc}") from exc

    async def close(self) -> None:
        if self._request is not None:
            self._request.release()
            self._request = None


@dataclass(frozen=True, slots=True)
class TariffState:
    """What the module last set on ``meter``'s pin 4 (``tariff`` ``None``: nothing yet) and
    who asked for it (``schedule``, ``home assistant``, ...)."""

    meter: str
    tariff: int | None
    origin: str | None = None


class TariffBoard:
    """Per meter with a tariff output: the tariff set, the command waiting (module doc)."""

    def __init__(self, meters: list[str]) -> None:
        self.meters = tuple(meters)
        self._set: dict[str, TariffState] = {m: TariffState(m, None) for m in meters}
        self._wanted: dict[str, tuple[int, str]] = {}  # the newest command of each meter
        self._events: dict[str, asyncio.Event] = {}
        self._listeners: list[Callable[[TariffState], None]] = []

    def listen(self, callback: Callable[[TariffState], None]) -> None:
        """Call ``callback`` with each change of what was set (and now with each meter's)."""
        self._listeners.append(callback)
        for state in self._set.values():
            callback(state)

    def state(self, meter: str) -> TariffState:
        return self._set[meter]

    def command(self, meter: str, tariff: int, origin: str) -> None:
        """Ask for ``tariff`` on ``meter`` (:class:`UsageError` for an unknown one)."""
        if meter not in self._set:
            raise UsageError(f"tariff: no meter {meter!r} with a tariff output")
        if tariff not in TARIFFS:
            raise UsageError(f"tariff: {tariff!r} is not 1 or 2")
        self._wanted[meter] = (tariff, origin)  # a newer command replaces one not yet taken
        self.event(meter).set()

    def event(self, meter: str) -> asyncio.Event:
        """Set when a command for ``meter`` waits."""
        return self._events.setdefault(meter, asyncio.Event())

    def take(self, meter: str) -> tuple[int, str] | None:
        """The command waiting for ``meter`` (tariff, origin), taken; ``None``: none."""
        self.event(meter).clear()
        return self._wanted.pop(meter, None)

    def was_set(self, meter: str, tariff: int, origin: str) -> None:
        """The module set ``tariff`` on ``meter``: tell the listeners."""
        state = TariffState(meter, tariff, origin)
        if self._set.get(meter) == state:
            return
        self._set[meter] = state
        for callback in self._listeners:
            callback(state)
