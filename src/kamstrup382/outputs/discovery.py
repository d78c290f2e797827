"""What the MQTT output publishes, as pure functions: topics, state payloads, Home Assistant
discovery configs. No I/O here; :mod:`kamstrup382.outputs.mqtt` sends what these return.

Topics (``P`` = ``topic_prefix``, ``D`` = ``discovery_prefix``)::

    P/status                         online | offline (retained; offline is the last will)
    P/<meter>/state                  one JSON object per reading (see state_payload)
    P/<meter>/availability           online | offline (retained): offline after a failed
                                     readout, online again with the next reading
    D/sensor/<node>/<register>/config  Home Assistant discovery, one per register (retained)
    D/status                         Home Assistant's birth/last will: ``online`` -> re-announce

The discovery configs are derived from the register table (:data:`REGISTERS`: name, unit,
decimals) and the outputs' descriptions (:data:`~kamstrup382.outputs.descriptions.HOME_ASSISTANT`:
device class, state class, icon), each declared once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from importlib import metadata
from typing import Any

from kamstrup382.errors import TypeNumberError
from kamstrup382.outputs.descriptions import HOME_ASSISTANT
from kamstrup382.protocol import (
    KAMSTRUP_382,
    REGISTERS,
    Register,
    TypeNumber,
    dialect_of_stored,
    parse_type_number,
)
from kamstrup382.protocol.registers import RegisterKind
from kamstrup382.storage import ReadingRecord

__all__ = [
    "OFFLINE",
    "ONLINE",
    "DeviceFacts",
    "Topics",
    "check_topic_prefix",
    "device",
    "device_facts",
    "discovery_configs",
    "discovery_payload",
    "node_id",
    "state_json",
    "state_payload",
]

ONLINE = "online"
OFFLINE = "offline"

#: Home Assistant's node_id / object_id alphabet.
_HA_ID = re.compile(r"[A-Za-z0-9_-]+")
_NOT_HA_ID = re.compile(r"[^A-Za-z0-9_-]")

#: Entity names (Home Assistant prefixes them with the device name).
_ENTITY_NAMES = {
    "customer_number": "Customer number",
    "energy": "Energy",
    "tariff_1": "Energy tariff 1",
    "tariff_2": "Energy tariff 2",
    "hour_counter": "Hour counter",
    "pulse_input": "Pulse input",
    "actual_peak": "Peak power this month",
    "last_month_peak": "Peak power last month",
}
#: Registers shown under "Diagnostic" rather than as the device's main sensors.
_DIAGNOSTIC = frozenset({"customer_number", "hour_counter"})


def check_topic_prefix(prefix: str) -> str | None:
    """Why ``prefix`` cannot start MQTT topics (``None``: it can)."""
    if not prefix:
        return "must not be empty"
    if any(ch in prefix for ch in "#+\0"):
        return "must not contain the wildcards '#', '+' or NUL"
    if prefix.startswith("/") or prefix.endswith("/"):
        return "must not start or end with '/'"
    if "//" in prefix:
        return "must not contain an empty level ('//')"
    if prefix.startswith("$"):
        return "must not start with '$' (reserved by brokers)"
    if len(prefix.encode()) > 1024:
        return "is too long"
    return None


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one installation."""

    prefix: str = "kamstrup382"
    discovery_prefix: str = "homeassistant"

    @property
    def status(self) -> str:
        """The collector's availability (retained; the last will says ``offline``)."""
        return f"{self.prefix}/status"

    @property
    def ha_status(self) -> str:
        """Home Assistant's birth and last-will topic."""
        return f"{self.discovery_prefix}/status"

    def state(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/state"

    def availability(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/availability"

    def discovery(self, meter: str, register: Register) -> str:
        return f"{self.discovery_prefix}/sensor/{node_id(meter)}/{register.name}/config"


def node_id(meter: str) -> str:
    """The meter's id in discovery topics and unique ids: ``kamstrup382_<meter>``.

    Meter names may hold ``.`` and ``:``, which Home Assistant ids may not; they become ``_``
    and a short hash of the real name is appended, so that ``a.b`` and ``a_b`` stay apart.
    """
    if _HA_ID.fullmatch(meter):
        return f"kamstrup382_{meter}"
    digest = hashlib.sha256(meter.encode()).hexdigest()[:8]
    return f"kamstrup382_{_NOT_HA_ID.sub('_', meter)}_{digest}"


# -- the state message --------------------------------------------------------------------------


def _number(value: Decimal, register: Register) -> int | float:
    """A register value as a JSON number with the meter's digits (53 -> 53, 18.3 -> 18.3)."""
    if register.decimals == 0:
        return int(value)
    # at most 7 significant digits: the float's shortest repr is the meter's own text
    return float(value)


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` (the storage gives aware UTC datetimes)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def state_payload(record: ReadingRecord) -> dict[str, Any]:
    """The JSON object published for one reading.

    Registers by name (numbers; the customer number as text with its leading zeros), when it
    was read (ISO 8601 UTC), the identification and type number, the BCC algorithm the meter
    used, and the timing of the readout.
    """
    values = record.values.as_dict()
    payload: dict[str, Any] = {"meter": record.meter}
    for register in REGISTERS:
        value = values[register.name]
        if value is None:  # a register this meter does not have: absent
            continue
        if register.kind is RegisterKind.TEXT:
            payload[register.name] = str(value)
        else:
            payload[register.name] = _number(value, register)
    payload.update(
        {
            "read_at": _iso(record.read_at),
            "slot": _iso(record.slot),
            "identification": record.identification,
            "type_number": record.type_number,
            "bcc_algorithm": record.bcc_algorithm,
            "timing": {
                "answer_delay_s": round(record.answer_delay, 3),  # to the millisecond
                "duration_s": round(record.duration, 3),
                "attempts": record.attempts,
            },
        }
    )
    return payload


def state_json(record: ReadingRecord) -> str:
    return json.dumps(state_payload(record), separators=(",", ":"))


# -- the device and its discovery configs --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What a reading tells about the meter as a device (``None``: not read yet)."""

    identification: str | None = None
    type_number: str | None = None
    customer_number: str | None = None


def device_facts(record: ReadingRecord | None) -> DeviceFacts:
    if record is None:
        return DeviceFacts()
    return DeviceFacts(record.identification, record.type_number, record.values.customer_number)


def _decoded(type_number: str | None) -> TypeNumber | None:
    if type_number is None:
        return None
    try:
        return parse_type_number(type_number)
    except TypeNumberError:  # stored text that is not a valid 382 type number
        return None


def _model(facts: DeviceFacts) -> str:
    decoded = _decoded(facts.type_number)
    if decoded is not None:
        phases = f"{decoded.phases} phase" + ("s" if decoded.phases > 1 else "")
        return (
            f"382 ({phases}, current code {decoded.current_code}, "
            f"class {decoded.accuracy_class}, module {decoded.module})"
        )
    dialect = dialect_of_stored(facts.identification)
    if dialect is not None and dialect is not KAMSTRUP_382:  # a 382C: no 685 type number
        return f"{dialect.label.removeprefix('Kamstrup ')} ({facts.identification})"
    if facts.identification:
        return f"unknown ({facts.identification})"
    return "382"


def _manufacturer(facts: DeviceFacts) -> str:
    code = (facts.identification or "KAM")[:3]
    return "Kamstrup" if code.upper() == "KAM" else code


@cache
def _version() -> str:
    try:
        return metadata.version("kamstrup382")
    except metadata.PackageNotFoundError:
        return "unknown"


def device(meter: str, facts: DeviceFacts) -> dict[str, Any]:
    """The ``device`` block: one Home Assistant device per meter."""
    block: dict[str, Any] = {
        "identifiers": [node_id(meter)],
        "name": meter,
        "manufacturer": _manufacturer(facts),
        "model": _model(facts),
    }
    if facts.type_number is not None:
        block["model_id"] = facts.type_number
    if facts.customer_number is not None:
        block["serial_number"] = facts.customer_number
    return block


def discovery_payload(
    meter: str, register: Register, facts: DeviceFacts, topics: Topics
) -> dict[str, Any]:
    """The discovery config of one register of one meter (a Home Assistant MQTT sensor)."""
    payload: dict[str, Any] = {
        "name": _ENTITY_NAMES.get(register.name, register.description),
        "unique_id": f"{node_id(meter)}_{register.name}",
        "state_topic": topics.state(meter),
        "value_template": "{{ value_json." + register.name + " }}",
        "availability": [
            {"topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE},
            {
                "topic": topics.availability(meter),
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
            },
        ],
        "availability_mode": "all",
        "device": device(meter, facts),
        "origin": {"name": "kamstrup382", "sw_version": _version()},
    }
    sensor = HOME_ASSISTANT[register.name]
    if sensor.device_class is not None:
        payload["device_class"] = sensor.device_class
    if sensor.state_class is not None:
        payload["state_class"] = sensor.state_class
    if register.unit is not None:
        payload["unit_of_measurement"] = register.unit
    if register.kind is not RegisterKind.TEXT:
        payload["suggested_display_precision"] = register.decimals
    if sensor.icon is not None:
        payload["icon"] = sensor.icon
    if register.name in _DIAGNOSTIC:
        payload["entity_category"] = "diagnostic"
    return payload


def discovery_configs(
    meter: str, facts: DeviceFacts, topics: Topics
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for every register of ``meter``, in register-table order: those its
    identification's dialect prints (the 685-382's until it was read)."""
    names = (dialect_of_stored(facts.identification) or KAMSTRUP_382).names
    return [
        (topics.discovery(meter, register), discovery_payload(meter, register, facts, topics))
        for register in REGISTERS
        if register.name in names
    ]
