"""Where pulses come from: a GPIO line on the meter's pin 3, or the emulator over TCP.

A source yields :class:`PulseEvent` s: the instant of each pulse in integer nanoseconds of the
source's own clock (the kernel's event timestamp for a GPIO line, not when Python saw it; the
meter's clock for the emulator), how many pulses, and how many the source knows it missed.

- ``tcp://HOST:PORT``: the JSON lines of ``k382 emulate --pulse-listen``. The connection is
  made again with backoff (0.5 s, doubling to 30 s) whenever it fails or ends; the ``total``
  of each line tells the pulses that passed while disconnected (``missed``), and the first
  event after a reconnect is marked ``gap`` (no interval is measured across it). A line over
  :data:`MAX_LINE` bytes or not a pulse event is skipped and counted (``bad_lines``).
- ``gpio:CHIP:LINE[:rising|falling]`` (``gpio:/dev/gpiochip0:17``): a Linux GPIO line through
  libgpiod v2 (the ``gpio`` extra). Falling edges by default (pin 3 is active low: open
  collector, pulled up), the pull-up bias and the kernel's debounce where the chip has them.
  Runs on hardware only: these machines have no GPIO chip, so the tests exercise its errors
  (a missing chip named as such) and everything after it with the TCP source.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from kamstrup382.errors import UsageError
from kamstrup382.extras import require

__all__ = [
    "MAX_LINE",
    "GpioPulseSource",
    "PulseEvent",
    "PulseSource",
    "TcpPulseSource",
    "open_pulse_source",
]

log = logging.getLogger(__name__)

#: The longest pulse line accepted (a real one is under 100 bytes).
MAX_LINE = 1024
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
#: The kernel's debounce asked of a GPIO line (a pulse lasts tens of milliseconds).
DEBOUNCE = timedelta(milliseconds=2)


@dataclass(frozen=True, slots=True)
class PulseEvent:
    """``count`` pulses, the last at ``at_ns``; ``missed`` more happened unseen before them;
    ``gap``: the source lost track before this event (measure no interval across it)."""

    at_ns: int
    count: int = 1
    missed: int = 0
    gap: bool = False


class PulseSource(Protocol):
    """``name`` as configured; ``wall_clock``: the events are stamped on the wall clock (else
    on the monotonic clock); ``connected``: delivering now; :meth:`check` raises the
    :class:`UsageError` (a missing extra, a missing chip) that would stop :meth:`events`."""

    name: str
    wall_clock: bool
    connected: bool

    def check(self) -> None: ...

    def events(self) -> AsyncGenerator[PulseEvent, None]: ...


def open_pulse_source(text: str) -> PulseSource:
    """The source ``text`` names; :class:`UsageError` saying what is wrong with it."""
    if text.startswith("tcp://"):
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"pulse source {text!r}: {exc}") from exc
        if not parts.hostname or port is None or port == 0:
            raise UsageError(f"pulse source {text!r}: expected tcp://HOST:PORT")
        return TcpPulseSource(parts.hostname, port)
    if text.startswith("gpio:"):
        return _gpio_source(text)
    raise UsageError(f"pulse source {text!r}: expected tcp://HOST:PORT or gpio:CHIP:LINE")


def _gpio_source(text: str) -> GpioPulseSource:
    parts = text[len("gpio:") :].split(":")
    edge = "falling"
    if parts and parts[-1] in ("rising", "falling"):
        edge = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1].isdigit():
        raise UsageError(f"pulse source {text!r}: expected gpio:CHIP:LINE[:rising|falling]")
    return GpioPulseSource(parts[0], int(parts[1]), edge=edge)


def _instant_ns(text: str) -> int:
    """An ISO 8601 instant as integer nanoseconds since the epoch (exact to the microsecond)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


class TcpPulseSource:
    """The pulses of one emulated meter, from ``k382 emulate --pulse-listen`` (module doc)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.name = f"tcp://{host}:{port}"
        self.wall_clock = True  # the emulator stamps each pulse on the meter's clock
        self.connected = False
        self.connects = 0
        self.bad_lines = 0
        self._total: int | None = None

    def check(self) -> None:
        """Nothing to check before connecting (an unreachable source is tried again)."""

    async def events(self) -> AsyncGenerator[PulseEvent, None]:
        delay = BACKOFF_FIRST
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE)
            except OSError as exc:
                log.warning(
                    "pulses %s: cannot connect (%s); again in %.1f s", self.name, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.connects += 1
            self.connected = True
            delay = BACKOFF_FIRST
            gap = True
            try:
                while True:
                    try:
                        line = await reader.readuntil(b"\n")
                    except asyncio.LimitOverrunError:
                        self.bad_lines += 1
                        log.warning(
                            "pulses %s: a line over %d bytes; reconnecting", self.name, MAX_LINE
                        )
                        break
                    except asyncio.IncompleteReadError:
                        break  # the source closed
                    event = self._event(line, gap)
                    if event is not None:
                        gap = False
                        yield event
            except OSError as exc:
                log.warning("pulses %s: connection lost (%s)", self.name, exc)
            finally:
                self.connected = False
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            log.info("pulses %s: disconnected; reconnecting", self.name)
            await asyncio.sleep(delay)

    def _event(self, line: bytes, gap: bool) -> PulseEvent | None:
        try:
            data: Any = json.loads(line)
            count, total = data["count"], data["total"]
            at_ns = _instant_ns(data["at"])
            if not (isinstance(count, int) and isinstance(total, int) and count >= 1):
                raise ValueError("count and total must be whole numbers, count >= 1")
        except (ValueError, KeyError, TypeError) as exc:
            self.bad_lines += 1
            log.debug("pulses %s: not a pulse event (%s): %r", self.name, exc, line[:80])
            return None
        missed = 0
        if self._total is not None and total - count > self._total:
            missed = total - count - self._total
        if self._total is not None and total < self._total:
            gap = True  # the source started again: its count too
        self._total = total
        return PulseEvent(at_ns, count, missed, gap or missed > 0)


class GpioPulseSource:
    """Edges of one GPIO line through libgpiod v2 (hardware only: see the module doc)."""

    def __init__(self, chip: str, line: int, *, edge: str = "falling") -> None:
        self.chip = chip
        self.line = line
        self.edge = edge
        self.name = f"gpio:{chip}:{line}"
        self.wall_clock = False  # the kernel's event timestamps: CLOCK_MONOTONIC
        self.connected = False

    def check(self) -> None:
        """The ``gpio`` extra and the chip are there (:class:`UsageError` naming what is not)."""
        require("gpio")
        if not os.path.exists(self.chip):
            raise UsageError(f"pulse source {self.name}: no GPIO chip {self.chip}")

    def _request(self) -> Any:
        self.check()
        import gpiod  # noqa: PLC0415 - the gpio extra
        from gpiod.line import Bias, Edge  # noqa: PLC0415

        edge = Edge.FALLING if self.edge == "falling" else Edge.RISING
        bias = Bias.PULL_UP if self.edge == "falling" else Bias.AS_IS
        full = gpiod.LineSettings(edge_detection=edge, bias=bias, debounce_period=DEBOUNCE)
        try:
            try:
                return gpiod.request_lines(self.chip, consumer="k382", config={self.line: full})
            except OSError:  # a chip without bias or debounce: edges alone
                plain = gpiod.LineSettings(edge_detection=edge)
                return gpiod.request_lines(self.chip, consumer="k382", config={self.line: plain})
        except (OSError, ValueError) as exc:
            raise UsageError(f"pulse source {self.name}: {exc}") from exc

    async def events(self) -> AsyncGenerator[PulseEvent, None]:
        request = self._request()
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(request.fd, ready.set)
        last_seqno: int | None = None
        self.connected = True
        try:
            while True:
                await ready.wait()
                ready.clear()
                for event in request.read_edge_events():
                    missed = 0
                    if last_seqno is not None and event.line_seqno > last_seqno + 1:
                        missed = event.line_seqno - last_seqno - 1  # the kernel's buffer overflowed
                    last_seqno = event.line_seqno
                    yield PulseEvent(event.timestamp_ns, 1, missed, missed > 0)
        finally:
            self.connected = False
            loop.remove_reader(request.fd)
            request.release()
