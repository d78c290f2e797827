"""KMP unit codes: the byte before a register's length in a GetRegister reply.

As data; the table the MeterLogger project, PyKMP and the 382Lx7 ESPHome component publish
(see docs/kmp.md). Where they disagree (code 21: ``W`` or a second ``kW``; code 25: ``var``
or a second ``kvar``), the SI progression of the neighbouring codes (Wh, kWh, MWh, GWh;
W, kW, MW, GW) decides. A code not in the table is shown as ``unit <code>``: the meter's byte
is what counts, never the register table's expectation.
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

__all__ = ["UNITS", "convert", "unit_name"]

UNITS = MappingProxyType(
    {
        0: "",
        1: "Wh",
        2: "kWh",
        3: "MWh",
        4: "GWh",
        5: "J",
        6: "kJ",
        7: "MJ",
        8: "GJ",
        9: "Cal",
        10: "kCal",
        11: "MCal",
        12: "GCal",
        13: "varh",
        14: "kvarh",
        15: "Mvarh",
        16: "Gvarh",
        17: "VAh",
        18: "kVAh",
        19: "MVAh",
        20: "GVAh",
        21: "W",
        22: "kW",
        23: "MW",
        24: "GW",
        25: "var",
        26: "kvar",
        27: "Mvar",
        28: "Gvar",
        29: "VA",
        30: "kVA",
        31: "MVA",
        32: "GVA",
        33: "V",
        34: "A",
        35: "kV",
        36: "kA",
        37: "°C",
        38: "K",
        39: "l",
        40: "m3",
        41: "l/h",
        42: "m3/h",
        43: "m3xC",
        44: "ton",
        45: "ton/h",
        46: "h",
        47: "hh:mm:ss",
        48: "yy:mm:dd",
        49: "yyyy:mm:dd",
        50: "mm:dd",
        51: "",
        52: "bar",
        53: "RTC",
        54: "ASCII",
        55: "m3 x 10",
        56: "ton x 10",
        57: "GJ x 10",
        58: "min",
        59: "bitfield",
        60: "s",
        61: "ms",
        62: "days",
        63: "RTC-Q",
        64: "datetime",
    }
)


def unit_name(code: int) -> str:
    """The unit a code stands for (``""``: a plain number); ``unit <code>`` if unknown."""
    return UNITS.get(code, f"unit {code}")


#: Units one register may be sent in, by the power of ten each is of its family's base unit:
#: energy in Wh, power in W, voltage in V, current in A.
_SCALES = MappingProxyType(
    {
        "Wh": ("Wh", 0),
        "kWh": ("Wh", 3),
        "MWh": ("Wh", 6),
        "GWh": ("Wh", 9),
        "W": ("W", 0),
        "kW": ("W", 3),
        "MW": ("W", 6),
        "GW": ("W", 9),
        "V": ("V", 0),
        "kV": ("V", 3),
        "A": ("A", 0),
        "kA": ("A", 3),
    }
)


def convert(value: Decimal, unit: str, to: str) -> Decimal | None:
    """``value`` in ``unit`` expressed exactly in ``to`` (``1500 Wh`` -> ``1.500 kWh``: a
    power of ten, no digit lost); ``None`` where the two are not the same quantity (a register
    sent in GJ where kWh was expected)."""
    if unit == to:
        return value
    source, target = _SCALES.get(unit), _SCALES.get(to)
    if source is None or target is None or source[0] != target[0]:
        return None
    scaled = value.scaleb(source[1] - target[1])
    # 2.4 kW is 2400 W, not 2.4E+3 W: a whole number is written out
    exponent = scaled.as_tuple().exponent
    return scaled.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else scaled
