"""The KMP face of an emulated 382J / 382Jx3 / 382Lx7: the meter model's registers as KMP.

A :class:`KmpMeter` reads the same :class:`~kamstrup382.emulator.model.MeterModel` the mode A
line serves (energy integrated from its load, the demand peak) and answers KMP's GetType,
GetSerialNo and GetRegister from it. No I/O, no time of its own (the model's clock).

What each register holds (the ids: :mod:`kamstrup382.protocol.kmp.registers`):

- ``energy`` (0x0001): whole kWh, as the display shows it; ``energy_hires`` (0x000D): the
  same energy to 0.01 kWh, truncated (so ``energy`` is always its whole part). The meter
  only consumes: ``energy_out``, ``energy_out_hires`` and ``power_out`` are 0.
- ``power`` (0x03FF): the load's power now, whole W. ``power_l1..l3``: that power split over
  the phases the type number says (3: 50 / 30 / 20 %, 1: all on L1), the parts adding up to
  the total exactly.
- ``voltage_l1..l3``: 230 V nominal, the phase's load pulling it down 0.4 V per kW (whole V);
  ``current_l1..l3``: the phase's power over its voltage, 0.01 A.
- ``max_power`` (0x0027): the model's demand peak this month, whole W.

GetType answers :attr:`KmpMeter.meter_type` (an emulator's own value: no public source gives
a 382's) and software revision ``A1``; GetSerialNo the customer number as an integer.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from kamstrup382.emulator.model import MeterModel
from kamstrup382.protocol.kmp import (
    KMP_REGISTER_BY_NAME,
    GetRegisterRequest,
    GetSerialNoRequest,
    GetTypeRequest,
    Message,
    RegisterReply,
    RegisterValue,
    SerialNoReply,
    TypeReply,
)

__all__ = ["EMULATED_METER_TYPE", "UNIT_CODES", "KmpMeter"]

#: GetType's meter type as the emulator answers it.
EMULATED_METER_TYPE = 0x0382
#: The unit codes the emulated meter sends (KMP's table: kWh 2, W 21, V 33, A 34).
UNIT_CODES = {"kWh": 2, "W": 21, "V": 33, "A": 34}
_SHARES = {1: (Fraction(1), Fraction(0), Fraction(0)), 3: tuple(Fraction(p, 10) for p in (5, 3, 2))}
_NOMINAL_V = 230
_DROP_V_PER_KW = Fraction(2, 5)


def _fixed(value: Fraction, decimals: int) -> Decimal:
    """``value`` truncated to ``decimals`` places, as a Decimal with exactly those digits."""
    scaled = math.floor(value * 10**decimals)
    sign = 1 if scaled < 0 else 0
    digits = tuple(int(d) for d in str(abs(scaled)))
    return Decimal((sign, digits, -decimals))


class KmpMeter:
    """One meter model answering KMP; see the module docstring."""

    def __init__(self, model: MeterModel, *, meter_type: int = EMULATED_METER_TYPE) -> None:
        self.model = model
        self.meter_type = meter_type
        self.serial = int(model.settings.customer_number)

    def register_values(self) -> dict[str, Decimal]:
        """Every register by name, now (advances the model once for energy and power)."""
        model = self.model
        energy = model.energy_kwh
        at = model.advance()
        power_w = Fraction(model.load.power_kw(at)).limit_denominator(10**6) * 1000
        phases = model.settings.parsed_type_number.phases
        shares = _SHARES.get(phases, _SHARES[3])
        total = math.floor(power_w)
        parts = [math.floor(total * s) for s in shares]
        parts[0] += total - sum(parts)
        values: dict[str, Decimal] = {
            "energy": _fixed(energy, 0),
            "energy_out": Decimal(0),
            "energy_hires": _fixed(energy, 2),
            "energy_out_hires": Decimal("0.00"),
            "power": Decimal(total),
            "power_out": Decimal(0),
            "max_power": _fixed(Fraction(model.values().actual_peak) * 1000, 0),
        }
        for n, part in enumerate(parts, start=1):
            volts = math.floor(_NOMINAL_V - _DROP_V_PER_KW * Fraction(part, 1000))
            values[f"power_l{n}"] = Decimal(part)
            values[f"voltage_l{n}"] = Decimal(volts)
            values[f"current_l{n}"] = _fixed(Fraction(part, volts), 2)
        return values

    def answer(self, request: Message) -> tuple[Message | None, dict[str, Decimal] | None]:
        """The reply to a request (``None``: the meter does not answer it) and, for
        GetRegister, every register's value at that instant (the ground truth of the reply)."""
        if isinstance(request, GetTypeRequest):
            return TypeReply(self.meter_type, 0x0101), None
        if isinstance(request, GetSerialNoRequest):
            return SerialNoReply(self.serial), None
        if isinstance(request, GetRegisterRequest):
            values = self.register_values()
            by_id = {KMP_REGISTER_BY_NAME[name].id: name for name in values}
            registers = []
            for register_id in request.ids:
                name = by_id.get(register_id)
                if name is None:
                    continue  # a register the meter does not have is left out of the reply
                unit = UNIT_CODES[KMP_REGISTER_BY_NAME[name].unit]
                registers.append(RegisterValue.of(register_id, unit, values[name], 4))
            return RegisterReply(tuple(registers)), values
        return None, None
