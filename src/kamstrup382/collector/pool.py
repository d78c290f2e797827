"""The collector's readers: one per readout, or kept connected from one readout to the next.

- A reader is made for each readout and closed after it; with ``keep_connected`` (see
  :class:`ReaderPool`) the reader of a meter alone on its line is kept open instead and used
  again next time. A kept reader given up in the middle of a readout (cancelled, or a bug: the
  line's state is unknown) is not used again; it is closed with the pool.
- At most :data:`CONNECTS_AT_ONCE` connections are being set up at once.
- Each meter's reader starts in ``auto`` BCC mode from what the last reader of that meter knew
  of its algorithm (a :class:`~kamstrup382.reader.BccMemory`: the algorithm learned, and a
  suspicion that the meter changed, which the next readout confirms or clears): taken from
  each reader after its readout, success or failure (:meth:`ReaderPool.remember`), and, for
  meters not read since the start, made from the algorithm of the meter's last stored reading.
  So the session's rule holds across readouts whether the connection is kept or not: a
  meter's algorithm changes only after two consecutive readouts agreed on the other one.
- A KMP meter (``protocol = "kmp"``, or found so by ``auto``) gets an
  :class:`~kamstrup382.reader.kmp_aio.AsyncKmpReader` that asks what the meter is in every
  readout (``identify``), with the meter's retries (per exchange) and answer margin; kept
  connected alike. It has no BCC to remember.
- Every mode A reader has at least two retries (:func:`~kamstrup382.collector.history.confirmable`):
  a reading no rule can vouch for is confirmed by more attempts of the same readout (a
  meter's first reading by three that agree).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping

from kamstrup382.collector.config import MeterConfig
from kamstrup382.collector.history import confirmable
from kamstrup382.collector.kmp_config import KmpSettings
from kamstrup382.errors import Kamstrup382Error
from kamstrup382.protocol import BccAlgorithm
from kamstrup382.reader import AsyncReader, BccMemory
from kamstrup382.reader.kmp_aio import AsyncKmpReader

__all__ = ["CONNECTS_AT_ONCE", "MeterReader", "ReaderPool"]

#: A reader of either protocol.
MeterReader = AsyncReader | AsyncKmpReader

log = logging.getLogger(__name__)

#: Connections being set up at once: ten thousand simultaneous connects starve the event loop
#: and time out (figures: ``docs/collector.md``).
CONNECTS_AT_ONCE = 1024


class ReaderPool:
    """The readers of ``meters``.

    ``keep_connected``: keep the connection of each meter alone on its line open between its
    readouts. The collector turns it off where its meters are shared with other collectors: the
    next slot's claim may go to another collector, whose connect a gateway taking one client at
    a time would refuse while this one holds it.
    """

    def __init__(self, meters: Iterable[MeterConfig], *, keep_connected: bool) -> None:
        self.keep_connected = keep_connected
        meters = list(meters)
        self._names = {meter.name for meter in meters}
        self._line_sizes = Counter(meter.shared_line for meter in meters)
        #: Per meter: what its last reader knew of its BCC algorithm, the next one's start.
        self._bcc: dict[str, BccMemory] = {}
        self._connecting: asyncio.Semaphore | None = None
        #: The readers kept open between readouts, by meter; and those given up in the middle
        #: of a readout, closed with the pool.
        self._kept: dict[str, MeterReader] = {}
        self._retired: list[MeterReader] = []
        #: The settings each kept reader was made with; the meters whose kept reader is in a
        #: readout now; kept readers to close once their readout ends (a new configuration).
        self._kept_for: dict[str, MeterConfig] = {}
        self._busy: set[str] = set()
        self._stale: dict[str, MeterReader] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def reader(
        self, meter: MeterConfig, kmp: KmpSettings | None = None
    ) -> contextlib.AbstractAsyncContextManager[MeterReader]:
        """The reader of ``meter`` for one readout: a new one, closed after it; or, where kept,
        the one kept open since the last. ``kmp``: the meter speaks KMP (its settings; for
        ``protocol = "auto"`` what was found), else mode A."""
        kept = self._kept.get(meter.name)
        if kept is not None and isinstance(kept, AsyncKmpReader) == (kmp is not None):
            self._busy.add(meter.name)
            return contextlib.nullcontext(kept)
        if kept is not None:  # the protocol found changed: the other reader goes
            self.retire(meter)
        reader: MeterReader
        if kmp is not None:
            reader = AsyncKmpReader(
                meter.port,
                baud=kmp.baud,
                stop_bits=kmp.stop_bits,
                registers=kmp.register_ids,
                retries=meter.retry.retries,
                answer_margin=meter.timing.answer_margin,
                identify=True,
            )
        else:
            reader = AsyncReader(
                meter.port,
                line=meter.line,
                bcc=meter.bcc,
                timing=meter.timing,
                retry=confirmable(meter.retry),
                bcc_memory=self._bcc.get(meter.name),
            )
        if self.keep_connected and self._line_sizes[meter.shared_line] == 1:
            self._kept[meter.name] = reader
            self._kept_for[meter.name] = meter
            self._busy.add(meter.name)
            return contextlib.nullcontext(reader)
        return reader

    async def connect(self, reader: MeterReader) -> None:
        """Open ``reader``'s port now, with at most :data:`CONNECTS_AT_ONCE` at once; a reader
        kept connected since its last readout passes at once (asyncio's semaphore looks at each
        of its waiters on every acquire: ten thousand kept readers through it would cost the
        square of their number).

        A failed open is left to the reader's ``read``, which tries again within its retries.
        """
        if reader.connected:
            return
        if self._connecting is None:
            self._connecting = asyncio.Semaphore(CONNECTS_AT_ONCE)
        async with self._connecting:
            with contextlib.suppress(Kamstrup382Error):
                await reader.open()

    def retire(self, meter: MeterConfig) -> None:
        """Do not use ``meter``'s kept reader again (a readout on it was given up half-way)."""
        reader = self._kept.pop(meter.name, None)
        self._kept_for.pop(meter.name, None)
        if reader is not None:
            self._retired.append(reader)

    def remember(self, meter: str, reader: MeterReader) -> None:
        """``reader`` ended a readout of ``meter``: what it knows of the meter's BCC algorithm
        is where the next reader starts."""
        # not for a meter removed during its readout; a KMP reader has no BCC
        if meter in self._names and isinstance(reader, AsyncReader):
            self._bcc[meter] = reader.bcc_memory
        self._busy.discard(meter)
        if self._stale.get(meter) is reader:  # its meter was removed or changed meanwhile
            del self._stale[meter]
            self._close_later(reader)

    def update(self, meters: Iterable[MeterConfig]) -> None:
        """Serve ``meters`` from now on (a new configuration): a kept reader of a meter removed
        or changed, or whose line is now shared, is closed (once its readout in flight ends);
        what was known of a removed meter's BCC algorithm is forgotten."""
        by_name = {meter.name: meter for meter in meters}
        self._names = set(by_name)
        self._line_sizes = Counter(meter.shared_line for meter in by_name.values())
        for name, reader in list(self._kept.items()):
            meter = by_name.get(name)
            if (
                meter is not None
                and self._kept_for.get(name) == meter
                and self._line_sizes[meter.shared_line] == 1
            ):
                continue
            del self._kept[name]
            self._kept_for.pop(name, None)
            if name in self._busy:
                self._stale[name] = reader
            else:
                self._close_later(reader)
        for name in [name for name in self._bcc if name not in by_name]:
            del self._bcc[name]

    def _close_later(self, reader: MeterReader) -> None:
        task = asyncio.get_running_loop().create_task(reader.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def bcc_memory(self, meter: str) -> BccMemory | None:
        """What the pool carries for ``meter``'s next reader (``None``: nothing known)."""
        return self._bcc.get(meter)

    def load_hints(self, stored: Mapping[str, str]) -> None:
        """The algorithms of the meters' last stored readings (names by meter), for meters not
        read since this pool began: known, from earlier readings; a name that is no algorithm
        is ignored, with a warning."""
        for meter, value in stored.items():
            try:
                self._bcc.setdefault(meter, BccMemory.from_hint(BccAlgorithm(value)))
            except ValueError:
                log.warning("meter %s: stored BCC algorithm %r ignored", meter, value)

    async def close(self) -> None:
        """Close the readers kept open."""
        readers = [*self._kept.values(), *self._retired, *self._stale.values()]
        self._kept.clear()
        self._kept_for.clear()
        self._retired.clear()
        self._stale.clear()
        for reader in readers:
            await reader.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
