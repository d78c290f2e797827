"""The blocking KMP reader: one port, readouts of a register set on demand.

::

    with KmpReader("/dev/ttyUSB0") as reader:      # 9600 baud 8N1, the 382 register set
        reading = reader.read()
    KmpReader("/dev/ttyUSB0", baud=1200, stop_bits=2)   # a MULTICAL: 1200 baud 8N2

Each exchange (one GetRegister request of at most 8 registers) is the sans-IO
:class:`~kamstrup382.reader.kmp_session.KmpExchange`; this module moves bytes and keeps time.
A failed exchange (a protocol error, a timeout) is tried again, up to ``retries`` more times,
after the line has been quiet for one inter-character timeout (what is left of a broken reply
must not answer the next request).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import TracebackType

from kamstrup382.errors import (
    ConnectionLost,
    Kamstrup382Error,
    LineError,
    ProtocolError,
    UsageError,
)
from kamstrup382.protocol.kmp import (
    KMP_382_REGISTERS,
    GetTypeRequest,
    Message,
    TypeReply,
)
from kamstrup382.reader.kmp_reading import KmpReading
from kamstrup382.reader.kmp_session import KmpExchange, KmpReadout, KmpTiming, plan_requests
from kamstrup382.reader.link import Link, open_link
from kamstrup382.reader.port import LineMode, parse_port

__all__ = ["DEFAULT_REGISTERS", "KmpReader"]

#: The 382 register set, asked in this order.
DEFAULT_REGISTERS: tuple[int, ...] = tuple(r.id for r in KMP_382_REGISTERS)
_QUIET_LIMIT = 2.0


class KmpReader:
    """Read a KMP meter on a serial device, ``socket://`` or ``rfc2217://`` port (blocking)."""

    def __init__(
        self,
        port: str,
        *,
        baud: int = 9600,
        registers: tuple[int, ...] = DEFAULT_REGISTERS,
        retries: int = 2,
        answer_margin: float = 0.0,
        connect_timeout: float = 5.0,
        stop_bits: int = 1,
        identify: bool = False,
    ) -> None:
        if not 0 <= retries <= 20:
            raise UsageError(f"retries must be 0-20, got {retries}")
        self.port = port
        self.spec = parse_port(port)
        if stop_bits not in (1, 2):
            raise UsageError(f"stop bits must be 1 (8N1) or 2 (8N2), got {stop_bits}")
        self.stop_bits = stop_bits
        self.timing = KmpTiming(baud=baud, bits_per_character=9 + stop_bits, margin=answer_margin)
        plan_requests(registers)  # checked now, not at the first readout
        self.registers = registers
        self.identify_meter = identify
        self.retries = retries
        self.connect_timeout = connect_timeout
        self._link: Link | None = None

    def __enter__(self) -> KmpReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def _ensure_link(self) -> Link:
        if self._link is None:
            try:
                self._link = open_link(
                    self.spec,
                    line=LineMode.EIGHT_N_ONE,
                    baudrate=self.timing.baud,
                    connect_timeout=self.connect_timeout,
                    stop_bits=self.stop_bits,
                )
            except OSError as exc:
                raise ConnectionLost(f"cannot open {self.port}: {exc}") from exc
        return self._link

    def identify(self) -> TypeReply:
        """GetType: the meter's type and software revision (with retries)."""
        reply, _ = self._exchange(GetTypeRequest())
        assert isinstance(reply, TypeReply)
        return reply

    def read(self) -> KmpReading:
        """One readout of the register set, with retries per exchange."""
        readout = KmpReadout(self.registers, identify=self.identify_meter)
        requested_at = datetime.now(UTC)
        started = time.monotonic()
        for request in readout.requests:
            reply, (attempts, received) = self._exchange(request)
            readout.answered(reply, attempts, received)
        return readout.reading(
            port=self.port,
            baud=self.timing.baud,
            stop_bits=self.stop_bits,
            requested_at=requested_at,
            duration=time.monotonic() - started,
        )

    def _exchange(self, request: Message) -> tuple[Message, tuple[int, int]]:
        """The checked reply to ``request`` and (attempts, bytes received)."""
        failed = 0
        while True:
            try:
                exchange = self._attempt(request)
                assert exchange.reply is not None
                return exchange.reply, (failed + 1, exchange.received)
            except (ProtocolError, LineError) as error:
                failed += 1
                if isinstance(error, ConnectionLost):
                    self.close()
                if failed > self.retries:
                    error.attempts = failed
                    raise
                if not isinstance(error, ConnectionLost):
                    self._wait_quiet()

    def _attempt(self, request: Message) -> KmpExchange:
        link = self._ensure_link()
        link.flush_input()
        exchange = KmpExchange(request, self.timing)
        link.write(exchange.wire)
        exchange.sent(time.monotonic())
        while True:
            wait = exchange.timeout_at - time.monotonic()
            if wait <= 0:
                raise exchange.expired(time.monotonic())
            data = link.read(wait)
            if data and exchange.receive(data, time.monotonic()) is not None:
                return exchange

    def _wait_quiet(self) -> None:
        """Read and drop until the line has been silent for one inter-character timeout."""
        link = self._link
        if link is None:
            return
        quiet = self.timing.inter_character
        limit = time.monotonic() + _QUIET_LIMIT
        try:
            while time.monotonic() < limit:
                if not link.read(min(quiet, limit - time.monotonic())):
                    return
        except Kamstrup382Error:
            self.close()
