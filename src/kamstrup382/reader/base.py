"""What the blocking and the asyncio reader share: their options and their state between reads."""

from __future__ import annotations

from typing import Generic, TypeVar

from kamstrup382.protocol import BccAlgorithm, BccMode, Dialect
from kamstrup382.protocol.decoder import DEFAULT_MAX_REPLY
from kamstrup382.reader.bcc_memory import BccMemory
from kamstrup382.reader.options import ReaderOptions
from kamstrup382.reader.policy import RetryPolicy, Timing
from kamstrup382.reader.port import LineMode
from kamstrup382.reader.session import Progress, Readout, Session

__all__ = ["ReaderBase"]

LinkT = TypeVar("LinkT")


class ReaderBase(Generic[LinkT]):
    """One port's options, its sans-IO session, and its open link (``LinkT``), if any.

    ``line``: ``7E1`` (the port does parity) or ``8N1`` (we do); default 8N1 for ``socket://``
    and 7E1 otherwise. ``bcc``: ``auto`` (learns the meter's algorithm), ``sum7`` or ``xor``.
    ``retries`` extra attempts with ``backoff`` doubling up to ``max_backoff``. The timing
    (``answer_timeout``, ``answer_margin``, ``inter_character``, ``deadline``, ``baudrate``) is
    described in :mod:`kamstrup382.reader.policy`; ``timing`` replaces all of it at once, and
    ``retry`` the retries (``retries``, ``backoff``, ``max_backoff``).
    ``progress(received, expected)`` is called as bytes arrive. ``bcc_hint``: in ``auto``
    mode, the algorithm an earlier reader learned for this meter, or ``bcc_memory`` all it
    knew (its :attr:`bcc_memory` after its last readout; it wins over ``bcc_hint``; see
    :mod:`kamstrup382.reader.session`).
    ``max_reply``: the largest reply accepted, in bytes from ``/`` to the BCC. ``dialect``:
    what the meter guarantees in its telegrams (:mod:`kamstrup382.protocol.dialects`; ``None``,
    the default: the dialect its identification names).
    """

    def __init__(
        self,
        port: str,
        *,
        line: LineMode | str | None = None,
        bcc: BccMode | str = BccMode.AUTO,
        retries: int = 2,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        answer_timeout: float = 0.6,
        answer_margin: float = 0.3,
        inter_character: float | None = None,
        deadline: float | None = None,
        baudrate: int = 300,
        timing: Timing | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        progress: Progress | None = None,
        bcc_hint: BccAlgorithm | str | None = None,
        bcc_memory: BccMemory | None = None,
        max_reply: int = DEFAULT_MAX_REPLY,
        dialect: Dialect | None = None,
    ) -> None:
        self.options = ReaderOptions.build(
            port,
            line=line,
            bcc=bcc,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            answer_timeout=answer_timeout,
            answer_margin=answer_margin,
            inter_character=inter_character,
            deadline=deadline,
            baudrate=baudrate,
            timing=timing,
            retry=retry,
            connect_timeout=connect_timeout,
            bcc_hint=bcc_hint,
            bcc_memory=bcc_memory,
            max_reply=max_reply,
            dialect=dialect,
        )
        self.port = port
        self.session: Session = self.options.session()
        self.progress = progress
        self._link: LinkT | None = None
        #: A reply broken off mid-way and its drain limit: let pass before the next request.
        self._broken: tuple[Readout, float] | None = None

    @property
    def bcc_memory(self) -> BccMemory:
        """What this reader knows of the meter's BCC algorithm after its last readout: give it
        to the next reader of the same meter (``bcc_memory=``)."""
        return self.session.bcc_memory

    @property
    def line(self) -> LineMode:
        return self.options.line
