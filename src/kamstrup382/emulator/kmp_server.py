"""Emulated KMP meters (382J, 382Jx3, 382Lx7, 382M) on TCP ports or pseudo-terminals.

::

    async with KmpEmulator(2, baud=9600) as emulator:
        emulator.ports          # ["socket://127.0.0.1:40001", "socket://127.0.0.1:40002"]

    with KmpEmulatorThread(1) as emulator:     # the same, on a thread of its own (tests)
        ...

Each meter is a :class:`~.kmp_meter.KmpMeter` over its own
:class:`~kamstrup382.emulator.model.MeterModel` (customer numbers counting up from the
settings'; ``load`` for all, or a household profile of its own each, as the mode A
emulator makes them; an optional tariff schedule), answering on its port through a
:class:`~.kmp_line.KmpLineSession` at the true baud rate; faults and delays are drawn from
one :class:`random.Random` per meter, seeded from ``seed`` and the meter's number.
``log(meter)`` is the meter's ground truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import random
import selectors
import threading
from collections.abc import Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, cast

from kamstrup382.emulator.kmp_faults import KmpFaults
from kamstrup382.emulator.kmp_line import (
    DEFAULT_KMP_DELAY,
    KmpExchange,
    KmpLineRules,
    KmpLineSession,
)
from kamstrup382.emulator.kmp_meter import KmpMeter
from kamstrup382.emulator.load import HouseholdLoad, Load
from kamstrup382.emulator.model import MeterModel
from kamstrup382.emulator.open_files import reserve_files
from kamstrup382.emulator.pty import PtyPair, open_pty
from kamstrup382.emulator.settings import MeterSettings
from kamstrup382.emulator.tcp import port_url
from kamstrup382.errors import ConnectionLost, UsageError
from kamstrup382.protocol.kmp import (
    Command,
    GetRegisterRequest,
    decode_message,
    parse_frame,
    register_name,
)

__all__ = ["PRECISE_LOOP_METERS", "KmpEmulator", "KmpEmulatorThread", "precise_event_loop"]


class _KmpTcpLine(asyncio.Protocol):
    def __init__(self, emulator: KmpEmulator, index: int) -> None:
        self.emulator = emulator
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.session: KmpLineSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not a subclass of asyncio.Transport)
        self.transport = cast("asyncio.Transport", transport)
        em = self.emulator
        self.session = KmpLineSession(
            em.meters[self.index], em.rules, em.rngs[self.index], self._send, em.logs[self.index]
        )
        em.lines.add(self)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.close()
        self.transport = None
        self.emulator.lines.discard(self)


class _KmpPtyLine:
    """A KMP meter on a pseudo-terminal: reads the master, writes replies into it.

    A KMP line is 8N1, what a pty is natively: no parking is needed (unlike mode A's 7E1,
    see :mod:`.pty`); the emulator keeps its own descriptor of the slave open so that the
    master never sees a hangup between two readers.
    """

    def __init__(self, emulator: KmpEmulator, index: int) -> None:
        self.pty: PtyPair = open_pty()
        self.path = self.pty.path
        self.session = KmpLineSession(
            emulator.meters[index],
            emulator.rules,
            emulator.rngs[index],
            self._send,
            emulator.logs[index],
        )
        asyncio.get_running_loop().add_reader(self.pty.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.pty.master, 4096)
        except OSError:  # would block, interrupted, or EIO (no slave: cannot happen)
            return
        self.session.feed(data)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # what the pty cannot take is lost, as on a line
            os.write(self.pty.master, data)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.pty.master)
        self.session.close()
        self.pty.close()


class KmpEmulator:
    """``meters`` KMP meters on ``host``, ports from ``port`` (0: free ports), or on
    pseudo-terminals (``transport="pty"``: ``ports`` are the slaves' paths)."""

    def __init__(
        self,
        meters: int | Sequence[MeterModel] = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        baud: int = 9600,
        bits_per_character: int = 10,
        delay: float | tuple[float, float] = DEFAULT_KMP_DELAY,
        faults: KmpFaults | None = None,
        seed: int = 0,
        settings: MeterSettings | None = None,
        transport: str = "tcp",
        load: Load | None = None,
        tariff_schedule: str | None = None,
    ) -> None:
        if transport not in ("tcp", "pty"):
            raise UsageError(f"transport must be tcp or pty, got {transport!r}")
        self.transport = transport
        self._ptys: list[_KmpPtyLine] = []
        if isinstance(meters, int):
            if meters < 1:
                raise UsageError(f"meters must be at least 1, got {meters}")
            base = settings if settings is not None else MeterSettings()
            first = int(base.customer_number)
            models = [
                MeterModel(
                    dataclasses.replace(base, customer_number=f"{(first + n) % 10**8:08d}"),
                    load if load is not None else HouseholdLoad(seed=n),
                    tariff_schedule=tariff_schedule,
                )
                for n in range(meters)
            ]
        else:
            models = list(meters)
        self.models = models
        self.meters = [KmpMeter(m) for m in models]
        self.rules = KmpLineRules(baud, bits_per_character, delay, faults or KmpFaults())
        self.rngs = [random.Random(f"{seed}:{n}") for n in range(len(models))]
        self.logs: list[list[KmpExchange]] = [[] for _ in models]
        self.host = host
        self.port = port
        self.lines: set[_KmpTcpLine] = set()
        self._servers: list[asyncio.Server] = []
        self.ports: list[str] = []

    def log(self, meter: int) -> list[KmpExchange]:
        return self.logs[meter]

    def readout_values(self, meter: int) -> dict[str, Decimal]:
        """The ground truth of the meter's last readout (from its last GetType on): the
        registers each GetRegister request asked for, at that request's instant (a request
        answered twice: its later answer). The log holds every register per request; a
        reading must equal this."""
        log = self.logs[meter]
        starts = [i for i, entry in enumerate(log) if entry.cid == Command.GET_TYPE]
        values: dict[str, Decimal] = {}
        for entry in log[starts[-1] if starts else 0 :]:
            if entry.values is None:
                continue
            request = decode_message(parse_frame(entry.request))
            if isinstance(request, GetRegisterRequest):
                asked = {register_name(i) for i in request.ids}
                values.update((n, v) for n, v in entry.values.items() if n in asked)
        return values

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "pty":
            reserve_files("pty", len(self.meters))
            try:
                for index in range(len(self.meters)):
                    line = _KmpPtyLine(self, index)
                    self._ptys.append(line)
                    self.ports.append(line.path)
            except OSError as exc:
                await self.close()
                raise UsageError(f"cannot open a pseudo-terminal: {exc.strerror}") from exc
            return
        try:
            for index in range(len(self.meters)):
                port = 0 if self.port == 0 else self.port + index
                server = await loop.create_server(
                    functools.partial(_KmpTcpLine, self, index), self.host, port
                )
                self._servers.append(server)
                bound = server.sockets[0].getsockname()[1]
                self.ports.append(port_url(self.host, bound))
        except OSError as exc:
            await self.close()
            raise ConnectionLost(f"cannot listen on {self.host}: {exc.strerror}") from exc

    async def close(self) -> None:
        for pty in self._ptys:
            pty.close()
        self._ptys.clear()
        for server in self._servers:
            server.close()
        for line in list(self.lines):
            if line.transport is not None:
                line.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> KmpEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


#: Up to this many meters, :func:`precise_event_loop` serves them (``select`` takes file
#: descriptors below 1024: a listener and a client per meter fit).
PRECISE_LOOP_METERS = 256


def precise_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire on time to the microsecond.

    asyncio's default selector (epoll) waits in whole milliseconds, rounded up, so each
    reply's last character would go out up to 1 ms late: 1 % of a 9600 baud exchange.
    ``select`` takes its timeout in microseconds; it serves file descriptors below 1024,
    which a few hundred emulated meters stay under.
    """
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


class KmpEmulatorThread:
    """A :class:`KmpEmulator` served by an event loop on a thread of its own."""

    def __init__(self, meters: int | Sequence[MeterModel] = 1, **kwargs: Any) -> None:
        self.emulator = KmpEmulator(meters, **kwargs)
        self._loop = precise_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="k382-kmp", daemon=True)

    @property
    def ports(self) -> list[str]:
        return self.emulator.ports

    def log(self, meter: int) -> list[KmpExchange]:
        return self.emulator.log(meter)

    def readout_values(self, meter: int) -> dict[str, Decimal]:
        return self.emulator.readout_values(meter)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.emulator.start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.emulator.close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> KmpEmulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
