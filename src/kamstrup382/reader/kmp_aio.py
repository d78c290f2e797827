"""The asyncio KMP reader: many KMP meters in one event loop, no thread per meter.

::

    async with AsyncKmpReader("socket://gw.local:4001") as reader:
        reading = await reader.read()

The same sans-IO :class:`~kamstrup382.reader.kmp_session.KmpExchange` and retry rule as the
blocking :class:`~kamstrup382.reader.kmp_sync.KmpReader`, on the links of
:mod:`kamstrup382.reader.aio_links` (TCP, serial devices, pyserial URLs); times are the
event loop's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType

from kamstrup382.errors import (
    ConnectionLost,
    ImplausibleError,
    LineError,
    ProtocolError,
    UsageError,
)
from kamstrup382.protocol.kmp import (
    GetTypeRequest,
    Message,
    TypeReply,
)
from kamstrup382.reader.aio import Gate
from kamstrup382.reader.aio_links import AsyncLink, open_async_link
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.reader.kmp_session import KmpExchange, KmpReadout, KmpTiming, plan_requests
from kamstrup382.reader.kmp_sync import DEFAULT_REGISTERS
from kamstrup382.reader.options import ReaderOptions

__all__ = ["AsyncKmpReader", "KmpAccept"]

#: Judges a complete reading; raises :class:`ImplausibleError` to have it read again.
KmpAccept = Callable[[KmpReading], None]

_QUIET_LIMIT = 2.0


class AsyncKmpReader:
    """Read a KMP meter without blocking the event loop; options as :class:`KmpReader`'s."""

    def __init__(
        self,
        port: str,
        *,
        baud: int = 9600,
        registers: tuple[int, ...] = DEFAULT_REGISTERS,
        retries: int = 2,
        answer_margin: float = 0.0,
        connect_timeout: float = 5.0,
        identify: bool = False,
        stop_bits: int = 1,
    ) -> None:
        if not 0 <= retries <= 20:
            raise UsageError(f"retries must be 0-20, got {retries}")
        if stop_bits not in (1, 2):
            raise UsageError(f"stop bits must be 1 (8N1) or 2 (8N2), got {stop_bits}")
        self.port = port
        self.stop_bits = stop_bits
        self.timing = KmpTiming(baud=baud, bits_per_character=9 + stop_bits, margin=answer_margin)
        self.options = ReaderOptions.build(
            port,
            line="8N1",
            bcc="auto",
            retries=retries,
            backoff=0.0,
            max_backoff=0.0,
            answer_timeout=self.timing.answer_window,
            answer_margin=answer_margin,
            inter_character=None,
            deadline=None,
            baudrate=baud,
            timing=None,
            connect_timeout=connect_timeout,
        )
        self.options = replace(self.options, stop_bits=stop_bits)
        plan_requests(registers)  # checked now, not at the first readout
        self.registers = registers
        self.identify_meter = identify
        self.retries = retries
        self._link: AsyncLink | None = None

    async def __aenter__(self) -> AsyncKmpReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    @property
    def connected(self) -> bool:
        """The port is open and not known to be lost (:meth:`open` has nothing to do)."""
        return self._link is not None and not self._link.lost

    async def open(self) -> None:
        """Open the port now (else the first exchange opens it); :class:`ConnectionLost` if it
        cannot be opened."""
        await self._ensure_link()

    async def _ensure_link(self) -> AsyncLink:
        if self._link is None or self._link.lost:
            if self._link is not None:
                await self.close()
            try:
                self._link = await open_async_link(self.options)
            except OSError as exc:
                raise ConnectionLost(f"cannot open {self.port}: {exc}") from exc
        return self._link

    async def identify(self) -> TypeReply:
        reply, _ = await self._exchange(GetTypeRequest())
        assert isinstance(reply, TypeReply)
        return reply

    async def read(
        self, *, gate: Gate | None = None, accept: KmpAccept | None = None
    ) -> KmpReading:
        """One readout of the register set, with retries per exchange.

        ``gate``: the first request waits for it (the collector's
        :class:`~kamstrup382.collector.gate.RequestGate` writes the requests of many readers
        at one instant; a gate closed instead raises its error and nothing is sent).
        ``accept(reading)`` judges the complete reading: an
        :class:`~kamstrup382.errors.ImplausibleError` it raises makes the whole readout
        again, within ``retries``.
        """
        failed = 0
        while True:
            reading = await self._read_once(gate if failed == 0 else None)
            if accept is None:
                return reading
            try:
                accept(reading)
            except ImplausibleError as error:
                failed += 1
                if failed > self.retries:
                    error.attempts = failed
                    raise
                continue
            return reading

    async def _read_once(self, gate: Gate | None) -> KmpReading:
        loop = asyncio.get_running_loop()
        if gate is not None:
            await self._ensure_link()
            await gate.wait()
        readout = KmpReadout(self.registers, identify=self.identify_meter)
        requested_at = datetime.now(UTC)
        started = loop.time()
        for request in readout.requests:
            reply, (attempts, received) = await self._exchange(request)
            readout.answered(reply, attempts, received)
        return readout.reading(
            port=self.port,
            baud=self.timing.baud,
            stop_bits=self.stop_bits,
            requested_at=requested_at,
            duration=loop.time() - started,
        )

    async def _exchange(self, request: Message) -> tuple[Message, tuple[int, int]]:
        failed = 0
        while True:
            try:
                exchange = await self._attempt(request)
                assert exchange.reply is not None
                return exchange.reply, (failed + 1, exchange.received)
            except (ProtocolError, LineError) as error:
                failed += 1
                if isinstance(error, ConnectionLost):
                    await self.close()
                if failed > self.retries:
                    error.attempts = failed
                    raise
                if not isinstance(error, ConnectionLost):
                    await self._wait_quiet()

    async def _attempt(self, request: Message) -> KmpExchange:
        loop = asyncio.get_running_loop()
        link = await self._ensure_link()
        await link.flush_input()
        exchange = KmpExchange(request, self.timing)
        await link.write(exchange.wire)
        exchange.sent(loop.time())
        while True:
            if loop.time() >= exchange.timeout_at:
                raise exchange.expired(loop.time())
            data = await link.read(exchange.timeout_at)
            if data and exchange.receive(data, loop.time()) is not None:
                return exchange

    async def _wait_quiet(self) -> None:
        link = self._link
        if link is None:
            return
        loop = asyncio.get_running_loop()
        limit = loop.time() + _QUIET_LIMIT
        try:
            while loop.time() < limit:
                until = min(loop.time() + self.timing.inter_character, limit)
                if not await link.read(until):
                    return
        except LineError:
            await self.close()
