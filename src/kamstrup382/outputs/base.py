"""What the collector hands its results to after it has stored them."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from kamstrup382.outputs.health import OutputHealth
from kamstrup382.pulses.live import PowerUpdate
from kamstrup382.pulses.tariff import TariffBoard
from kamstrup382.storage import AnyReading, FailureRecord, Storage

__all__ = ["Output"]


class Output(abc.ABC):
    """An output of the collector (MQTT, Prometheus, ...).

    The collector calls ``start`` once, ``publish`` after every batch it has stored (readings
    and failures of one cycle, or part of one), and ``stop`` on shutdown. ``publish`` must not
    block the event loop and must not raise for an outage of what it publishes to: an output
    that must not lose readings sets ``uses_outbox`` so that the collector queues every new
    reading in the storage's outbox, in the same transaction that stores it, and drains that.
    """

    name: str = "output"
    uses_outbox: bool = False

    async def start(self, storage: Storage) -> None:  # noqa: B027 - optional hook
        """Called once before the first cycle."""

    @abc.abstractmethod
    async def publish(
        self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]
    ) -> None:
        """``readings`` of either protocol: a mode A
        :class:`~kamstrup382.storage.ReadingRecord` or a KMP
        :class:`~kamstrup382.storage.KmpReadingRecord` (an output that has nothing to say
        of one skips it)."""

    def meters_changed(self, meters: Sequence[Any]) -> None:  # noqa: B027 - optional hook
        """The configured meters are now ``meters`` (a reloaded configuration: the meters'
        configs, or names): called on the event loop, between batches."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Called once on shutdown; flush what can be flushed quickly."""

    def power(self, update: PowerUpdate) -> None:  # noqa: B027 - optional hook
        """A meter's live power from its pulses (each pulse event, and each second while
        none comes); ``update.report`` says whether a publishing output should publish it.
        Called in the event loop: must not block, must not raise."""

    def control(self, board: TariffBoard) -> None:  # noqa: B027 - optional hook
        """The meters' tariff outputs (pin 4), before ``start``: an output that shows the
        tariff set (``board.listen``) or takes commands (``board.command``) keeps it."""

    def health(self) -> OutputHealth | None:
        """The output's own state and counters (MQTT: connected, login refused, ...), for the
        metrics; ``None`` for an output without a state of its own. Called from any thread."""
        return None
