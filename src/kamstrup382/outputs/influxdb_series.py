"""The series a reading becomes in InfluxDB: measurement, tags, fields, time, as data.

One point per reading::

    kamstrup382,customer_number=00000042,meter=house,type_number=685-382-OK-15
        energy_kwh=1234i,tariff_1_kwh=1000i,tariff_2_kwh=234i,hour_counter_h=8760i,
        pulse_input=17i,actual_peak_w=18300i,last_month_peak_w=21700i,
        answer_delay_s=0.61,duration_s=4.2,attempts=1i 1700000000123456000

- time: the reading's own ``read_at`` (when the request was sent), so that a backlog lands at
  its true time;
- tags: the meter's configured name, its customer number and its type number (left out when
  the identification has none), and the ``[influxdb] tags`` given in the config;
- fields: every numeric register as an exact integer in the unit its name ends in (the peaks,
  kW with one decimal on the meter, in whole watts), the answer delay and the readout's
  duration in seconds, the attempts it took.

A KMP reading (382J, 382Jx3, 382Lx7, 382M) is a point of the same measurement::

    kamstrup382,meter=flat,meter_type=0x0382,serial=54042
        energy_kwh=1234i,energy_hires_kwh=1234.56,power_w=1830.0,voltage_l1_v=229.0,
        current_l1_a=3.99,power_l1_w=915.0,duration_s=0.21,attempts=3i,exchanges=3i
        1700000000123456000

- tags: the meter's name, its GetType ``meter_type`` (``0x0382``) and its GetSerialNo
  ``serial``, and the configured tags;
- fields: the registers the meter sent and no other (a register it left out is no field, never
  0), each keyed by its name and the unit of :data:`~kamstrup382.protocol.kmp.
  KMP_REGISTER_BY_NAME` (``_kwh``, ``_w``, ``_v``, ``_a``); the readout's duration, the
  exchanges and the attempts (no answer delay: KMP has one per exchange, not per readout).

Each field key has one type whatever the meter (InfluxDB refuses a point whose field has
another type than the shard holds): ``energy_kwh`` and ``energy_out_kwh`` are integers, the
meter's whole-kWh display registers, ``energy_kwh`` being the same field as a mode A meter's;
every other KMP register is a float, written with exactly the meter's digits (a float64 keeps
up to 15 significant digits; a value it would round, or a fractional value in an integer
field, is refused with :class:`ValueError`, as a mode A peak that is not whole in watts is).

The same reading always gives the same measurement, tags and time, so writing it twice (after
a retry whose answer was lost) leaves one point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from kamstrup382.outputs.influxdb_line import FieldValue, Point, timestamp
from kamstrup382.protocol.kmp import KMP_382_REGISTERS
from kamstrup382.protocol.registers import REGISTERS, RegisterKind
from kamstrup382.storage import AnyReading, KmpReadingRecord, ReadingRecord

__all__ = [
    "FIELDS",
    "KMP_FIELDS",
    "Field",
    "KmpField",
    "kmp_point",
    "mode_a_point",
    "reading_point",
]


@dataclass(frozen=True, slots=True)
class Field:
    """A register as a field: its key, and the factor from the register's unit to the key's."""

    register: str
    key: str
    scale: int


#: Per register unit: the suffix of the field key and the factor to it (kW -> W).
_UNITS: Mapping[str | None, tuple[str, int]] = {
    "kWh": ("_kwh", 1),
    "h": ("_h", 1),
    "kW": ("_w", 1000),
    None: ("", 1),
}

#: The registers' fields, in the order of the register table.
FIELDS: tuple[Field, ...] = tuple(
    Field(r.name, r.name + _UNITS[r.unit][0], _UNITS[r.unit][1])
    for r in REGISTERS
    if r.kind is not RegisterKind.TEXT
)


def _exact(value: Decimal, scale: int, key: str) -> int:
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{key}: {value} is not a whole number in the field's unit")
    return int(scaled)


@dataclass(frozen=True, slots=True)
class KmpField:
    """A KMP register as a field: its key and whether it is an integer (else a float)."""

    register: str
    key: str
    integer: bool


#: Per KMP register unit: the suffix of the field key.
_KMP_SUFFIXES: Mapping[str, str] = {"kWh": "_kwh", "W": "_w", "V": "_v", "A": "_a"}
#: The whole-kWh registers: integer fields (``energy_kwh`` is the mode A meters' field too).
_KMP_INTEGERS = frozenset({"energy", "energy_out"})

#: The KMP registers' fields, in the order of the 382's register table.
KMP_FIELDS: tuple[KmpField, ...] = tuple(
    KmpField(r.name, r.name + _KMP_SUFFIXES[r.unit], r.name in _KMP_INTEGERS)
    for r in KMP_382_REGISTERS
)


def _float(value: Decimal, key: str) -> float:
    """``value`` as a float whose shortest text has exactly its digits (every value of up to
    15 significant digits has one), or :class:`ValueError`."""
    number = float(value)
    if not math.isfinite(number) or Decimal(repr(number)) != value:
        raise ValueError(f"{key}: {value} has more digits than a float field keeps")
    return number


def reading_point(
    record: AnyReading,
    *,
    measurement: str,
    precision: str,
    tags: Mapping[str, str] = {},
) -> Point:
    """The point of ``record``, of either protocol (see the module documentation)."""
    if isinstance(record, KmpReadingRecord):
        return kmp_point(record, measurement=measurement, precision=precision, tags=tags)
    return mode_a_point(record, measurement=measurement, precision=precision, tags=tags)


def kmp_point(
    record: KmpReadingRecord,
    *,
    measurement: str,
    precision: str,
    tags: Mapping[str, str] = {},
) -> Point:
    """The point of a KMP reading (see the module documentation)."""
    point_tags = {
        **tags,
        "meter": record.meter,
        "meter_type": f"0x{record.meter_type:04x}",
        "serial": str(record.serial),
    }
    fields: dict[str, FieldValue] = {}
    values = record.values
    for f in KMP_FIELDS:
        value = values.get(f.register)
        if value is None:  # a register the meter did not send: no field, never 0
            continue
        fields[f.key] = _exact(value, 1, f.key) if f.integer else _float(value, f.key)
    fields["duration_s"] = float(record.duration)
    fields["attempts"] = int(record.attempts)
    fields["exchanges"] = int(record.exchanges)
    return Point(measurement, point_tags, fields, timestamp(record.read_at, precision))


def mode_a_point(
    record: ReadingRecord,
    *,
    measurement: str,
    precision: str,
    tags: Mapping[str, str] = {},
) -> Point:
    """The point of a mode A reading (see the module documentation)."""
    values = record.values
    point_tags = {**tags, "meter": record.meter, "customer_number": values.customer_number}
    if record.type_number:
        point_tags["type_number"] = record.type_number
    fields: dict[str, FieldValue] = {}
    for f in FIELDS:
        value = getattr(values, f.register)
        if value is not None:  # a register this meter does not have: no field, never 0
            fields[f.key] = _exact(value, f.scale, f.key)
    fields["answer_delay_s"] = float(record.answer_delay)
    fields["duration_s"] = float(record.duration)
    fields["attempts"] = int(record.attempts)
    return Point(measurement, point_tags, fields, timestamp(record.read_at, precision))
