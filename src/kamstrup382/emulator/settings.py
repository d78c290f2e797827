"""What an emulated meter is and the registers it starts with: :class:`MeterSettings`.

Defaults are the specification's example meter. The settings check themselves: a wrong value
raises :class:`~kamstrup382.errors.ConfigError` naming the field. They also keep what a real
685-382 guarantees (:mod:`kamstrup382.protocol.plausibility`), so that the emulator never
sends what a real meter cannot: energy is tariff 1 + tariff 2 (modulo the registers' wrap),
and no peak is above the meter's maximum power for its phases; :func:`check_load` holds a
load to that power too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction

from kamstrup382.errors import ConfigError, TypeNumberError
from kamstrup382.protocol import (
    KAMSTRUP_382,
    REGISTER_BY_NAME,
    Identification,
    TypeNumber,
    parse_type_number,
)

__all__ = ["MeterSettings", "check_load"]

_TENTH = Decimal("0.1")
_DAY = timedelta(days=1)


def _exact(value: Decimal | int, key: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ConfigError(key, f"must be an int or Decimal, got {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ConfigError(key, f"must be finite, got {value}")
    if value < 0:
        raise ConfigError(key, f"must not be negative, got {value}")
    return Fraction(value)


@dataclass(frozen=True)
class MeterSettings:
    """What a meter is and the registers it starts with (defaults: the specification example).

    ``type_number`` is the ``685-X3X2X1-Y2Y1-Z2Z1`` text; ``label`` (two digits), if given,
    replaces its label selection Z2Z1. ``customer_number`` is 8 digits. ``zone`` places the
    month boundary and the demand periods. The ``*_kwh``, ``hour_counter_h`` and
    ``pulse_input`` values start the registers (fractions of kWh and hours are kept inside);
    ``actual_peak_kw`` / ``last_month_peak_kw`` start ``1.6`` / ``1.6*1`` (one decimal).
    ``tariff_input`` is the initial state of the input (ignored with a schedule).
    Wrong values raise :class:`~kamstrup382.errors.ConfigError` naming the field.
    """

    type_number: str = "685-382-OK-15"
    customer_number: str = "00054042"
    label: str | None = None
    demand_period: timedelta = timedelta(minutes=15)
    pulse_constant: int = 1000
    pulse_input_mode: bool = False
    zone: tzinfo = UTC
    energy_kwh: Decimal | int = 53
    tariff_1_kwh: Decimal | int = 33
    tariff_2_kwh: Decimal | int = 20
    hour_counter_h: Decimal | int = 482
    pulse_input: int = 0
    actual_peak_kw: Decimal = Decimal("18.3")
    last_month_peak_kw: Decimal = Decimal("0.0")
    tariff_input: bool = False
    parsed_type_number: TypeNumber = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            tn = parse_type_number(self.type_number)
        except TypeNumberError as exc:
            raise ConfigError("type_number", str(exc)) from exc
        if self.label is not None:
            try:
                tn = TypeNumber(
                    tn.phases, tn.current_code, tn.accuracy_class, tn.module, self.label
                )
            except TypeNumberError as exc:
                raise ConfigError("label", f"{self.label!r} is not two digits") from exc
        object.__setattr__(self, "parsed_type_number", tn)
        digits = REGISTER_BY_NAME["customer_number"].digits
        if not (
            isinstance(self.customer_number, str)
            and self.customer_number.isascii()
            and self.customer_number.isdigit()
            and len(self.customer_number) == digits
        ):
            raise ConfigError(
                "customer_number", f"must be {digits} digits, got {self.customer_number!r}"
            )
        period = self.demand_period
        if not isinstance(period, timedelta) or period <= timedelta(0) or _DAY % period:
            raise ConfigError(
                "demand_period", f"must divide a day into whole periods, got {self.demand_period}"
            )
        if not isinstance(self.zone, tzinfo):
            raise ConfigError("zone", f"must be a tzinfo (e.g. ZoneInfo(...)), got {self.zone!r}")
        if isinstance(self.pulse_constant, bool) or not isinstance(self.pulse_constant, int):
            raise ConfigError(
                "pulse_constant", f"must be an int (imp/kWh), got {self.pulse_constant!r}"
            )
        if self.pulse_constant <= 0:
            raise ConfigError("pulse_constant", f"must be positive, got {self.pulse_constant}")
        if (
            isinstance(self.pulse_input, bool)
            or not isinstance(self.pulse_input, int)
            or self.pulse_input < 0
        ):
            raise ConfigError(
                "pulse_input", f"must be a non-negative int, got {self.pulse_input!r}"
            )
        for key, register in (
            ("energy_kwh", "energy"),
            ("tariff_1_kwh", "tariff_1"),
            ("tariff_2_kwh", "tariff_2"),
            ("hour_counter_h", "hour_counter"),
        ):
            value = _exact(getattr(self, key), key)
            if value >= REGISTER_BY_NAME[register].wraps_at:
                raise ConfigError(key, f"{getattr(self, key)} does not fit register {register}")
        for key in ("actual_peak_kw", "last_month_peak_kw"):
            value = getattr(self, key)
            if (
                not isinstance(value, Decimal)
                or not value.is_finite()
                or value < 0
                or value >= REGISTER_BY_NAME["actual_peak"].wraps_at
                or value != value.quantize(_TENTH)
            ):
                raise ConfigError(key, f"must be a Decimal kW with one decimal, got {value!r}")
        self._check_plausible(tn)

    def _check_plausible(self, tn: TypeNumber) -> None:
        """What a real meter guarantees (the dialect's rules), with the field that breaks it."""
        dialect = KAMSTRUP_382
        wrap = REGISTER_BY_NAME[dialect.total].wraps_at
        energy = Fraction(self.energy_kwh)
        tariffs = Fraction(self.tariff_1_kwh) + Fraction(self.tariff_2_kwh)
        if (energy - tariffs) % wrap:
            raise ConfigError(
                "energy_kwh",
                f"{self.energy_kwh} is not tariff_1_kwh {self.tariff_1_kwh} + tariff_2_kwh "
                f"{self.tariff_2_kwh}: a meter's energy is the sum of its tariffs",
            )
        limit = dialect.max_power_kw(tn.phases)
        for key in ("actual_peak_kw", "last_month_peak_kw"):
            value = getattr(self, key)
            if value > limit:
                raise ConfigError(
                    key,
                    f"{value} kW is above the {limit} kW a {tn.phases}-phase 685-382 can deliver",
                )

    @property
    def identification(self) -> Identification:
        return Identification.for_type_number(self.parsed_type_number)


def check_load(settings: MeterSettings, load: object) -> None:
    """Refuse a load that draws more than the meter can deliver (its peaks and the rise of its
    energy would break what the meter guarantees): a :class:`ConfigError` naming ``load``.

    A load that says its highest power (``max_kw``: every load of
    :mod:`~kamstrup382.emulator.load`) is checked; another is taken as it is.
    """
    highest = getattr(load, "max_kw", None)
    if highest is None:
        return
    phases = settings.parsed_type_number.phases
    limit = KAMSTRUP_382.max_power_kw(phases)
    if Fraction(highest) > Fraction(limit):
        raise ConfigError(
            "load",
            f"{load!r} draws up to {float(highest):g} kW, above the {limit} kW a "
            f"{phases}-phase 685-382 can deliver",
        )
