"""What a reader in ``auto`` mode knows of a meter's BCC algorithm, carried between readers.

A value, no I/O: the :class:`~kamstrup382.reader.session.Session` takes one, replaces it after
each readout (one ``read()``, all its attempts), and gives it out (``reader.bcc_memory``), so
that a fresh reader per readout (the collector's) starts where the last one stopped.

The rules (see :mod:`kamstrup382.reader.session` for why):

- nothing known: a telegram matching either algorithm is accepted; the one that matched is
  learned (a telegram that both match teaches nothing);
- known: a telegram matching only the *other* algorithm is refused, whatever the attempt, in
  this readout; if the readout ends without a telegram of the known algorithm but with one
  that matched only the other and passed every plausibility rule, that algorithm is
  *suspected*;
- suspected: in the very next readout, a telegram matching only the suspected algorithm (and
  passing every rule) is accepted and the algorithm changes. Any other end of that readout
  clears the suspicion: two *consecutive* readouts must agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kamstrup382.protocol import BccAlgorithm, BccCheck

__all__ = ["BccCertainty", "BccMemory"]


class BccCertainty(enum.StrEnum):
    """How sure a reading's BCC algorithm is (what ``k382 read`` says of it)."""

    FIXED = "fixed"  # the caller fixed the algorithm: only that one was computed
    UNDECIDED = "undecided"  # both algorithms give the BCC received over this block
    OWN = "own"  # only the 7-bit sum matched: the Kamstrup 382's own algorithm
    UNCONFIRMED = "unconfirmed"  # only the XOR matched, and no earlier readout agreed yet
    CONFIRMED = "confirmed"  # the algorithm matched in two readouts (or an earlier reader's)


def _only(check: BccCheck) -> BccAlgorithm | None:
    """The one algorithm that matched, or ``None`` when both (or neither) did."""
    sum7 = check.matches(BccAlgorithm.SUM7)
    xor = check.matches(BccAlgorithm.XOR)
    if sum7 == xor:
        return None
    return BccAlgorithm.SUM7 if sum7 else BccAlgorithm.XOR


@dataclass(frozen=True, slots=True)
class BccMemory:
    """``algorithm``: the meter's, once known. ``suspect``: the other algorithm, when the last
    readout ended with a plausible telegram matching only it. ``confirmed``: two readouts
    agreed on ``algorithm`` (or an earlier reader's stored readings did: :meth:`from_hint`).
    """

    algorithm: BccAlgorithm | None = None
    suspect: BccAlgorithm | None = None
    confirmed: bool = False

    @classmethod
    def from_hint(cls, hint: BccAlgorithm | None) -> BccMemory:
        """The memory of a meter whose readings so far used ``hint`` (``bcc_hint``)."""
        return cls(algorithm=hint, confirmed=hint is not None)

    def refuses(self, check: BccCheck) -> BccAlgorithm | None:
        """The other algorithm, when a telegram with ``check`` must not be accepted now."""
        known = self.algorithm
        if known is None or check.matches(known):
            return None
        other = _only(check)
        if other is None or other is self.suspect:
            return None
        return other

    def accepted(self, check: BccCheck) -> BccMemory:
        """The memory after a readout returned a telegram with ``check``."""
        only = _only(check)
        if only is None:  # both matched: nothing learned, nothing suspected
            return BccMemory(self.algorithm, None, self.confirmed)
        if self.algorithm is None:
            return BccMemory(only, None, confirmed=False)
        # the same algorithm again, or the suspected one a second readout in a row
        return BccMemory(only, None, confirmed=True)

    def failed(self, suspect: BccAlgorithm | None) -> BccMemory:
        """The memory after a readout failed; ``suspect``: the other algorithm one of its
        telegrams matched alone while passing every plausibility rule, if any."""
        return BccMemory(self.algorithm, suspect, self.confirmed)

    def certainty(self, check: BccCheck) -> BccCertainty:
        """How sure the algorithm of a telegram with ``check`` is, this memory taken after it."""
        if check.sum7 is None or check.xor is None:
            return BccCertainty.FIXED
        only = _only(check)
        if only is None:
            return BccCertainty.UNDECIDED
        if self.confirmed and self.algorithm is only:
            return BccCertainty.CONFIRMED
        return BccCertainty.OWN if only is BccAlgorithm.SUM7 else BccCertainty.UNCONFIRMED
