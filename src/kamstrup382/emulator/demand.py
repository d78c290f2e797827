"""Registers ``1.6`` and ``1.6*1``: the month's highest demand, and last month's.

``1.6`` actual peak: the highest average power over a demand period this month, in kW with
one decimal (the average truncated to 0.1 kW, as a register shows it; a 382C's ``1.6.0``: three
decimals). Demand periods
(``MeterSettings.demand_period``, 15 minutes by default, dividing a day) are aligned to local
midnight in ``MeterSettings.zone`` (UTC by default). Only complete periods count: the period
the register was started in (unless started exactly at its start) does not, and a period
counts when the meter reaches its end. At the first instant of a month (local midnight in the
zone) the peak moves to ``1.6*1`` (last month's peak) and ``1.6`` restarts at 0.0; the period
ending exactly at the month boundary still belongs to the old month. The initial ``1.6`` of
the settings counts as this month's peak so far. The peak is capped at the register's largest
value (999999.9; 99.999 on a 382C).

Instants are integers: microseconds since the epoch (:func:`~.load.to_us`).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from kamstrup382.emulator.load import US_PER_HOUR, from_us, to_us
from kamstrup382.emulator.settings import MeterSettings
from kamstrup382.emulator.tariff import local_instant
from kamstrup382.protocol import REGISTER_BY_NAME, Register

__all__ = ["DemandRegisters"]

_DAY = timedelta(days=1)


class DemandRegisters:
    """The demand periods and peaks of one meter, started at instant ``now``.

    The owner integrates energy up to :attr:`period_end` at most, hands it over
    (:meth:`add`), and says each instant it has reached (:meth:`reached`).
    """

    def __init__(
        self,
        settings: MeterSettings,
        now: int,
        register: Register = REGISTER_BY_NAME["actual_peak"],
    ) -> None:
        #: The peak register's last digit (0.1 kW on the 685-382, 0.001 kW on the 382C) and
        #: the largest peak it shows, in units of that digit.
        self._scale = 10**register.decimals
        self._quantum = Decimal(1).scaleb(-register.decimals)
        self._max_units = register.wraps_at * self._scale - 1
        self._zone = settings.zone
        self._period_us = settings.demand_period // timedelta(microseconds=1)
        self.peak: Decimal = settings.actual_peak_kw
        self.last_peak: Decimal = settings.last_month_peak_kw
        self.period_start, self.period_end = self._period_around(now)
        self._whole = self.period_start == now
        self._energy = Fraction(0)
        self._month_end = self._next_month_start(now)

    def _local_date(self, us: int) -> date:
        return from_us(us).astimezone(self._zone).date()

    def _day_start(self, day: date) -> int:
        return to_us(local_instant(day, 0, self._zone))

    def _period_around(self, us: int) -> tuple[int, int]:
        """The demand period holding ``us``: aligned to local midnight, cut at the next one."""
        day = self._local_date(us)
        start = self._day_start(day)
        while start > us:  # midnight itself skipped by a daylight-saving change
            day -= _DAY
            start = self._day_start(day)
        next_day = self._day_start(day + _DAY)
        begin = start + (us - start) // self._period_us * self._period_us
        return begin, min(begin + self._period_us, next_day)

    def _next_month_start(self, us: int) -> int:
        day = self._local_date(us)
        first = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        return self._day_start(first)

    def add(self, energy: Fraction) -> None:
        """``energy`` kWh used within the current period."""
        self._energy += energy

    def reached(self, us: int) -> None:
        """The meter has integrated up to ``us``: close the period or the month ending there."""
        if us == self.period_end:
            self._close_period()
        if us >= self._month_end:
            self.last_peak = self.peak
            self.peak = Decimal(0).quantize(self._quantum)
            self._month_end = self._next_month_start(us)

    def _close_period(self) -> None:
        if self._whole:
            average = self._energy * US_PER_HOUR / (self.period_end - self.period_start)
            units = min(math.floor(average * self._scale), self._max_units)
            peak = (Decimal(units) / self._scale).quantize(self._quantum)
            self.peak = max(self.peak, peak)
        self._whole = True
        self._energy = Fraction(0)
        self.period_start, self.period_end = self._period_around(self.period_end)
