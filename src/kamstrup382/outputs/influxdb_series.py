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

The same reading always gives the same measurement, tags and time, so writing it twice (after
a retry whose answer was lost) leaves one point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from kamstrup382.outputs.influxdb_line import FieldValue, Point, timestamp
from kamstrup382.protocol.registers import REGISTERS, RegisterKind
from kamstrup382.storage import ReadingRecord

__all__ = ["FIELDS", "Field", "reading_point"]


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


def reading_point(
    record: ReadingRecord,
    *,
    measurement: str,
    precision: str,
    tags: Mapping[str, str] = {},
) -> Point:
    """The point of ``record`` (see the module documentation)."""
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
