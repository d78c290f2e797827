"""What an emulated meter is and the registers it starts with: :class:`MeterSettings`.

Defaults are the specification's example meter, a 685-382; ``model="382c"`` is a 382C (its
identification, its OBIS-style codes, tariffs 1-4, an actual peak with three decimals, no last
month's peak: :mod:`kamstrup382.protocol.dialects`). The settings check themselves: a wrong
value raises :class:`~kamstrup382.errors.ConfigError` naming the field. They also keep what a
real meter of the model guarantees (:mod:`kamstrup382.protocol.plausibility`), so that the
emulator never sends what a real meter cannot: energy is the sum of the tariffs (modulo the
registers' wrap), and no peak is above the meter's maximum power for its phases;
:func:`check_load` holds a load to that power too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction

from kamstrup382.errors import ConfigError, Kamstrup382Error, TypeNumberError
from kamstrup382.protocol import (
    KAMSTRUP_382,
    KAMSTRUP_382C,
    REGISTER_BY_NAME,
    Dialect,
    Identification,
    TypeNumber,
    dialect_of,
    parse_identification,
    parse_type_number,
)

__all__ = ["MODELS", "MeterSettings", "check_load"]

_DAY = timedelta(days=1)
#: The meter models the emulator knows, by the name ``--model`` takes, with their dialect.
MODELS: dict[str, Dialect] = {"685-382": KAMSTRUP_382, "382c": KAMSTRUP_382C}
#: The 382C's identification text when none is given: the published one (docs/protocol.md).
DEFAULT_382C_IDENTIFICATION = "68438BC450000"


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

    ``model``: ``685-382`` or ``382c`` (:data:`MODELS`). ``type_number`` is the
    ``685-X3X2X1-Y2Y1-Z2Z1`` text of a 685-382 (its phases bound the power of either model);
    ``label`` (two digits), if given, replaces its label selection Z2Z1. ``identification``:
    the identification text of a 382C (default: the published ``68438BC450000``); a 685-382's
    is its type number. ``customer_number`` is 8 digits. ``zone`` places the
    month boundary and the demand periods. The ``*_kwh``, ``hour_counter_h`` and
    ``pulse_input`` values start the registers (fractions of kWh and hours are kept inside);
    ``actual_peak_kw`` / ``last_month_peak_kw`` start the peaks (the model's decimals: one on
    the 685-382, three on the 382C, which has no last month's peak); ``tariff_3_kwh`` /
    ``tariff_4_kwh`` start a 382C's tariffs 3 and 4 (0 on a 685-382, which has none).
    ``tariff_input`` is the initial state of the input (ignored with a schedule).
    Wrong values raise :class:`~kamstrup382.errors.ConfigError` naming the field.
    """

    type_number: str = "685-382-OK-15"
    customer_number: str = "00054042"
    model: str = "685-382"
    identification_text: str | None = None
    label: str | None = None
    demand_period: timedelta = timedelta(minutes=15)
    pulse_constant: int = 1000
    pulse_input_mode: bool = False
    zone: tzinfo = UTC
    energy_kwh: Decimal | int = 53
    tariff_1_kwh: Decimal | int = 33
    tariff_2_kwh: Decimal | int = 20
    tariff_3_kwh: Decimal | int = 0
    tariff_4_kwh: Decimal | int = 0
    hour_counter_h: Decimal | int = 482
    pulse_input: int = 0
    actual_peak_kw: Decimal = Decimal("18.3")
    last_month_peak_kw: Decimal = Decimal("0.0")
    tariff_input: bool = False
    parsed_type_number: TypeNumber = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError("model", f"{self.model!r} is not one of {', '.join(MODELS)}")
        self._check_identification()
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
        dialect = self.dialect
        for key, register in (
            ("energy_kwh", "energy"),
            ("tariff_1_kwh", "tariff_1"),
            ("tariff_2_kwh", "tariff_2"),
            ("tariff_3_kwh", "tariff_3"),
            ("tariff_4_kwh", "tariff_4"),
            ("hour_counter_h", "hour_counter"),
        ):
            value = _exact(getattr(self, key), key)
            if value >= REGISTER_BY_NAME[register].wraps_at:
                raise ConfigError(key, f"{getattr(self, key)} does not fit register {register}")
            if register not in dialect.names and value:
                raise ConfigError(key, f"a {self.model} has no register {register}")
        for key, name in (("actual_peak_kw", "actual_peak"), ("last_month_peak_kw", "actual_peak")):
            value = getattr(self, key)
            peak = dialect.register(name)
            quantum = Decimal(1).scaleb(-peak.decimals)
            if (
                not isinstance(value, Decimal)
                or not value.is_finite()
                or value < 0
                or value >= peak.wraps_at
                or value != value.quantize(quantum)
            ):
                raise ConfigError(
                    key,
                    f"must be a Decimal kW below {peak.wraps_at} with at most "
                    f"{peak.decimals} decimals, got {value!r}",
                )
        self._check_plausible(tn)

    def _check_identification(self) -> None:
        text = self.identification_text
        if text is None:
            return
        if self.model != "382c":
            raise ConfigError("identification_text", "only a 382c takes an identification text")
        if not isinstance(text, str) or dialect_of(_identification(text)) is not KAMSTRUP_382C:
            raise ConfigError(
                "identification_text",
                f"{text!r} is not a 382C's identification (like {DEFAULT_382C_IDENTIFICATION})",
            )

    def _check_plausible(self, tn: TypeNumber) -> None:
        """What a real meter guarantees (the dialect's rules), with the field that breaks it."""
        dialect = self.dialect
        wrap = REGISTER_BY_NAME[dialect.total].wraps_at
        energy = Fraction(self.energy_kwh)
        keys = [f"{part}_kwh" for part in dialect.parts]
        tariffs = sum((Fraction(getattr(self, key)) for key in keys), Fraction(0))
        if (energy - tariffs) % wrap:
            terms = " + ".join(f"{key} {getattr(self, key)}" for key in keys)
            raise ConfigError(
                "energy_kwh",
                f"{self.energy_kwh} is not {terms}: a meter's energy is the sum of its tariffs",
            )
        limit = dialect.max_power_kw(tn.phases)
        for key in ("actual_peak_kw", "last_month_peak_kw"):
            value = getattr(self, key)
            if value > limit:
                raise ConfigError(
                    key,
                    f"{value} kW is above the {limit} kW a {tn.phases}-phase {self.model} can "
                    "deliver",
                )

    @property
    def dialect(self) -> Dialect:
        """What the meter prints and guarantees: its model's dialect."""
        return MODELS[self.model]

    @property
    def identification(self) -> Identification:
        if self.model == "382c":
            return _identification(self.identification_text or DEFAULT_382C_IDENTIFICATION)
        return Identification.for_type_number(self.parsed_type_number)


def _identification(text: str) -> Identification:
    try:
        return parse_identification(f"/KAM {text}".encode("ascii"))
    except (UnicodeEncodeError, Kamstrup382Error) as exc:
        raise ConfigError("identification_text", f"{text!r}: {exc}") from None


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
    limit = settings.dialect.max_power_kw(phases)
    if Fraction(highest) > Fraction(limit):
        raise ConfigError(
            "load",
            f"{load!r} draws up to {float(highest):g} kW, above the {limit} kW a "
            f"{phases}-phase {settings.model} can deliver",
        )
