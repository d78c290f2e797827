"""What the collector remembers of each meter, and how a new reading is judged against it.

The collector keeps, per meter, the last reading it accepted (:class:`History`: its values,
its ``read_at`` and the meter's phases from its type number), loaded from the storage at
start in one query (:meth:`~kamstrup382.storage.Storage.latest_readings`) and replaced each
time a reading is accepted. Each readout is judged by a :class:`Judge` (the reader's
``accept`` hook, inside its retries):

1. **History.** The reading must follow the last accepted one
   (:func:`~kamstrup382.protocol.plausibility.check_history`: counters never down except at the
   wrap and never faster than the maximum power allows, the hour counter, the customer number,
   the peaks). An :class:`~kamstrup382.errors.ImplausibleError` fails the attempt, and the
   reader tries again like after a BCC error.
2. **Confirmation.** Some values no rule can vouch for. They are confirmed, not trusted: the
   attempt is refused (``ImplausibleError``, rule :data:`UNCONFIRMED`) and kept as one of the
   readout's *candidates*; a later attempt is accepted when its telegram is heard in enough
   telegrams of the readout: itself and the candidates that agree with it, :data:`SUPPORT`
   (2) for a value in doubt, :data:`FIRST_SIGHT_SUPPORT` (3) for a first reading, whose values
   become what every later reading is held to (its customer number for good). Two telegrams
   agree when the second may follow the first (:func:`check_history` between them, seconds
   apart: no counter can move more than a kWh or an hour) and every register no rule bounds
   (:func:`unbounded`) is equal in both. Damaged telegrams are not independent of each
   other: a swap has only a few places to fall (about 18 in a Kamstrup 382 telegram), so two
   attempts damaged alike agree. Where the readout's telegrams show one register's digits in
   two orders (one is a swap of the other), a value must be heard in :data:`MARGIN` (2) more
   telegrams than its rival. A telegram that agrees with none becomes a candidate in its turn.

What needs confirming (:func:`doubts_of` a dialect, the rules as data; :data:`DOUBTS`, the
Kamstrup 382's):

- **first sight**: a meter with no accepted reading yet (its first readout ever, or the
  storage lost): there is nothing to compare with, any register may hold a swap.
- **a change no rule bounds**: any change of the actual peak, of last month's peak or of the
  pulse input (a new maximum, the monthly reset, pulses counted: the rules bound none of
  them);
- **a bound too wide to see a swap**: a permutation of a register's digits (two adjacent
  digits swapped, a digit doubled and an equal one dropped inside one value) changes it by a
  multiple of 9 units of its last digit (it keeps the digit sum), at least 9. The hour
  counter's bound (the hours elapsed + 1) sees that within 8 hours; beyond (a meter read less
  often, a collector that was down) or when the clock went back, a swap of the true value may
  land anywhere the bound allows, so the hour counter is confirmed whatever it shows.

The others need none: the sum rule (energy = tariff 1 + tariff 2, in every telegram) sees a
permutation in any one of the three energy registers, a shift between two registers always
breaks their exact widths, and the customer number never changes.

**A replaced meter.** A meter's customer number never changes: a telegram with another one is
another meter on the port (or damage). It is judged as at first sight (heard in
:data:`FIRST_SIGHT_SUPPORT` agreeing telegrams) and refused (rule :data:`REPLACED`) until the
next readout hears the same meter too; then it is taken as a replacement (a warning in the
log), and its readings are the history from then on. A readout of the old meter in between
forgets the new one.

A steady meter costs nothing (its changes are small and bounded); a confirmation costs one
more attempt of the same readout (with the reader's backoff before it): a new peak (most often
in the first days of a month), the monthly reset, a meter counting pulses; a meter's first
readout costs two more. The collector therefore gives each reader at least two retries
(:func:`confirmable`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from kamstrup382.errors import ImplausibleError, TypeNumberError
from kamstrup382.protocol import MeterValues
from kamstrup382.protocol.dialects import DIALECTS, KAMSTRUP_382, Dialect
from kamstrup382.protocol.identification import parse_type_number
from kamstrup382.protocol.plausibility import Observation, check_history
from kamstrup382.protocol.registers import Register
from kamstrup382.reader import Reading, RetryPolicy
from kamstrup382.storage import ReadingRecord

__all__ = [
    "DOUBTS",
    "FIRST_SIGHT",
    "FIRST_SIGHT_SUPPORT",
    "MARGIN",
    "REPLACED",
    "SUPPORT",
    "UNCONFIRMED",
    "Doubt",
    "History",
    "Judge",
    "confirmable",
    "doubts_of",
    "observation_of",
    "unbounded",
]

log = logging.getLogger(__name__)

#: ``ImplausibleError.rule`` of a reading refused until another attempt confirms it.
UNCONFIRMED = "unconfirmed"
#: ``ImplausibleError.rule`` of another meter's reading on a meter's port, refused until the
#: next readout hears the same meter (then taken as a replacement); and the history's rule it
#: answers.
REPLACED = "replaced"
CUSTOMER_RULE = "customer"
#: Telegrams of one readout that must agree to confirm a value in doubt; a first reading
#: (whose values become the history every later reading is held to, its customer number for
#: good) must be heard in three.
SUPPORT = 2
FIRST_SIGHT_SUPPORT = 3
#: Where telegrams of one readout show one register's digits in two orders (one of them a
#: swap of the other), a value must be heard in this many more telegrams than the other.
MARGIN = 2
#: Why a meter's first reading is confirmed.
FIRST_SIGHT = "the first reading of this meter, nothing to compare it with"
#: The hour counter rises at most the hours elapsed + 1: beyond this many hours, a swap (a
#: change of 9 or more) fits the bound and is not seen.
_HOURS_BLIND = Decimal(8)
_HOUR = 3600


@dataclass(frozen=True, slots=True)
class Doubt:
    """What of a register, since the last accepted reading, must be confirmed.

    ``register``: the register's name. ``beyond_hours``: ``None``: any change of the value (no
    rule bounds it); a number: whatever the value, when more than this many hours passed or
    the clock went back (the rule's bound is then too wide to see a swap).
    """

    register: str
    why: str
    beyond_hours: Decimal | None = None

    def applies(self, previous: Observation, current: Observation) -> bool:
        if self.beyond_hours is not None:
            seconds = (current.at - previous.at).total_seconds()
            return seconds <= 0 or seconds > float(self.beyond_hours) * _HOUR
        return bool(
            getattr(previous.values, self.register) != getattr(current.values, self.register)
        )


def unbounded(dialect: Dialect) -> tuple[str, ...]:
    """The registers of ``dialect`` whose change no rule bounds: its peaks and its counters
    of another device's pulses. Two telegrams agree only if these are equal."""
    return (*dialect.peaks, *dialect.unbounded_counters)


def doubts_of(dialect: Dialect) -> tuple[Doubt, ...]:
    """What needs confirming in ``dialect``'s readings besides a first sight (see the module's
    documentation)."""
    changed = tuple(
        Doubt(
            name, f"the {dialect.register(name).description.lower()} changed, which no rule bounds"
        )
        for name in unbounded(dialect)
    )
    hours = Doubt(
        dialect.hour_counter,
        f"more than {_HOURS_BLIND} h since the last reading: the hour counter's bound cannot see "
        "a swap",
        beyond_hours=_HOURS_BLIND,
    )
    return (*changed, hours)


#: The doubts of the Kamstrup 685-382.
DOUBTS: tuple[Doubt, ...] = doubts_of(KAMSTRUP_382)
#: The doubts of each dialect, by its name.
_DOUBTS: dict[str, tuple[Doubt, ...]] = {d.name: doubts_of(d) for d in DIALECTS}


def confirmable(retry: RetryPolicy) -> RetryPolicy:
    """``retry`` with room for a confirmation: a first reading needs
    :data:`FIRST_SIGHT_SUPPORT` agreeing attempts."""
    least = FIRST_SIGHT_SUPPORT - 1
    return retry if retry.retries >= least else replace(retry, retries=least)


def _digits(value: Decimal | str, register: Register) -> str:
    """``value`` as the meter prints its digits (without the decimal comma)."""
    if isinstance(value, str):
        return value
    return f"{int(value.scaleb(register.decimals)):0{register.digits + register.decimals}d}"


def _judged_by(history: History, reading: Reading) -> Dialect:
    """The dialect ``reading`` is judged by: the history's own, else its identification's."""
    return history.dialect if history.dialect is not None else reading.telegram.dialect


def observation_of(values: MeterValues, at: datetime, type_number: str | None) -> Observation:
    """An observation of a meter whose type number is ``type_number`` (text, or ``None``: 3
    phases, the dialect's default)."""
    phases = KAMSTRUP_382.default_phases
    if type_number is not None:
        with contextlib.suppress(TypeNumberError):  # stored by an older version, or edited
            phases = parse_type_number(type_number).phases
    return Observation(values, at, phases)


class History:
    """The last reading the collector accepted of each meter (see the module documentation).

    ``dialect``: the rules every meter is held to; ``None`` (the default): each reading's own,
    the dialect its identification names (a 685-382 and a 382C in one collector).
    """

    def __init__(self, dialect: Dialect | None = None) -> None:
        self.dialect = dialect
        self._last: dict[str, Observation] = {}
        #: Per meter: the customer number of another meter heard on its port in the last
        #: readout (confirmed there as a first sight is): taken as a replacement if the next
        #: readout hears it too.
        self._replacing: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._last)

    def last(self, meter: str) -> Observation | None:
        return self._last.get(meter)

    def load(self, records: Iterable[ReadingRecord]) -> None:
        """The newest stored readings (from the storage, at start), for meters not read since."""
        for record in records:
            seen = observation_of(record.values, record.read_at, record.type_number)
            self._last.setdefault(record.meter, seen)

    def forget(self, meters: Iterable[str]) -> None:
        """Drop what is known of ``meters`` (no longer configured)."""
        for meter in meters:
            self._last.pop(meter, None)
            self._replacing.pop(meter, None)

    def accepted(self, meter: str, observation: Observation) -> None:
        """``meter``'s reading ``observation`` was accepted: the next one is judged against it."""
        self._last[meter] = observation
        self._replacing.pop(meter, None)

    def replacing(self, meter: str) -> str | None:
        """The customer number another meter on ``meter``'s port showed in the last readout."""
        return self._replacing.get(meter)

    def expect_replacement(self, meter: str, customer_number: str) -> None:
        self._replacing[meter] = customer_number

    def judge(self, meter: str, read_at: Callable[[Reading], datetime]) -> Judge:
        """The ``accept`` hook of one readout of ``meter``; ``read_at`` gives the time a reading
        will be stored with (the collector's clock)."""
        return Judge(self, meter, read_at)


class Judge:
    """One readout's ``accept`` hook: history, then confirmation (see the module docs).

    ``accepted`` is the observation of the reading it let through last (the collector records
    it in the :class:`History` once the reader returned that reading).
    """

    def __init__(
        self, history: History, meter: str, read_at: Callable[[Reading], datetime]
    ) -> None:
        self.history = history
        self.meter = meter
        self.read_at = read_at
        #: The readout's refused readings awaiting confirmation, as observed on the reader's
        #: wall clock (the seconds between attempts): at most one per attempt.
        self.candidates: list[Observation] = []
        self.accepted: Observation | None = None
        #: The dialect the readout's last reading was judged by.
        self.dialect: Dialect = KAMSTRUP_382 if history.dialect is None else history.dialect
        #: How many attempts were refused for want of confirmation.
        self.unconfirmed = 0

    def __call__(self, reading: Reading) -> None:
        dialect = self.dialect = _judged_by(self.history, reading)
        type_number = reading.identification.type_number
        phases = dialect.default_phases if type_number is None else type_number.phases
        values = reading.meter_values()
        current = Observation(values, self.read_at(reading), phases)
        previous = self.history.last(self.meter)
        doubt: Doubt | None = None
        replaced: str | None = None  # the customer number of another meter on the port
        if previous is not None:
            try:
                check_history(previous, current, dialect)
            except ImplausibleError as exc:
                if exc.rule != CUSTOMER_RULE:
                    raise
                # another meter: judged as at first sight, and over two readouts
                replaced = previous.values.customer_number
            if replaced is None:
                doubts = _DOUBTS.get(dialect.name) or doubts_of(dialect)
                doubt = next((d for d in doubts if d.applies(previous, current)), None)
                if doubt is None:
                    self.accepted = current
                    return
        heard = Observation(values, reading.requested_at, phases)
        support = 1 + sum(self._agree(before, heard) for before in self.candidates)
        against = sum(self._permuted(before, heard) for before in self.candidates)
        needed = max(FIRST_SIGHT_SUPPORT if doubt is None else SUPPORT, against + MARGIN)
        if support >= needed and replaced is not None:
            new = values.customer_number
            if self.history.replacing(self.meter) == new:  # the last readout heard it too
                log.warning(
                    "meter %s: customer number %s where %s was: taken as a replaced meter "
                    "(heard in two readouts); its history starts again",
                    self.meter,
                    new,
                    replaced,
                )
                self.accepted = current
                return
            self.history.expect_replacement(self.meter, new)
            raise ImplausibleError(
                f"customer number {new}, not the meter's {replaced} (heard in {support} "
                "telegrams): taken as a replaced meter if the next readout hears it too",
                rule=REPLACED,
                register=dialect.register(dialect.customer).code,
            )
        if support >= needed:
            self.accepted = current
            return
        self.candidates.append(heard)
        self.unconfirmed += 1
        why = FIRST_SIGHT if doubt is None else doubt.why
        raise ImplausibleError(
            f"{why}: to be confirmed by another attempt ({support} of {needed} telegrams agree)",
            rule=UNCONFIRMED,
            register=None if doubt is None else dialect.register(doubt.register).code,
        )

    def _permuted(self, before: Observation, heard: Observation) -> bool:
        """Whether some register of ``heard`` shows the digits of ``before``'s in another
        order: one of the two is a swap (or a rotation) of the other."""
        old, new = before.values.as_dict(), heard.values.as_dict()
        for register in self.dialect.registers:
            if old[register.name] is None or new[register.name] is None:  # another model
                return False
            a, b = _digits(old[register.name], register), _digits(new[register.name], register)
            if a != b and sorted(a) == sorted(b):
                return True
        return False

    def _agree(self, before: Observation, heard: Observation) -> bool:
        """Whether ``before`` confirms ``heard`` (see the module documentation)."""
        old, new = before.values, heard.values
        if any(getattr(old, name) != getattr(new, name) for name in unbounded(self.dialect)):
            return False
        try:
            check_history(before, heard, self.dialect)
        except ImplausibleError:
            return False
        return True
