"""What the MQTT output publishes, as pure functions: topics, state payloads, Home Assistant
discovery configs. No I/O here; :mod:`kamstrup382.outputs.mqtt` sends what these return.

Topics (``P`` = ``topic_prefix``, ``D`` = ``discovery_prefix``)::

    P/status                         online | offline (retained; offline is the last will)
    P/<meter>/state                  one JSON object per reading (see state_payload)
    P/<meter>/availability           online | offline (retained): offline after a failed
                                     readout, online again with the next reading
    P/<meter>/readout                how the readouts go: JSON (retained, see readout_payload)
    D/device/<device id>/config      Home Assistant device discovery, one per meter (retained)
    D/status                         Home Assistant's birth/last will: ``online`` -> re-announce

A meter's device id is the meter's own identity, not its configured name (which is only the
name shown): see :func:`device_id`. Its components are built from data: the register table
(:data:`REGISTERS`: unit, decimals) with the outputs' descriptions
(:data:`~kamstrup382.outputs.descriptions.HOME_ASSISTANT`), and the status entities
(:data:`~kamstrup382.outputs.descriptions.HOME_ASSISTANT_STATUS`), each declared once; a KMP
meter's from the KMP register table with
:data:`~kamstrup382.outputs.descriptions.HOME_ASSISTANT_KMP` (:data:`KMP_ENTITIES`). Every
value template comes from :func:`value_template`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import metadata
from typing import Any
from urllib.parse import quote

from kamstrup382.documents import any_record_document, dumps
from kamstrup382.errors import TypeNumberError
from kamstrup382.outputs.descriptions import (
    HOME_ASSISTANT,
    HOME_ASSISTANT_KMP,
    HOME_ASSISTANT_STATUS,
    KMP_MODELS,
    HomeAssistantEntity,
    Source,
)
from kamstrup382.protocol import (
    KAMSTRUP_382,
    REGISTER_BY_NAME,
    REGISTERS,
    Register,
    TypeNumber,
    dialect_of_stored,
    parse_type_number,
)
from kamstrup382.protocol.kmp import KMP_382_REGISTERS, KmpRegister
from kamstrup382.protocol.registers import RegisterKind
from kamstrup382.storage import AnyReading, KmpReadingRecord

__all__ = [
    "ENTITIES",
    "FAILING",
    "KMP_ENTITIES",
    "OFFLINE",
    "OK",
    "ONLINE",
    "DeviceFacts",
    "MeterSetup",
    "Topics",
    "check_topic_prefix",
    "device",
    "device_config",
    "device_facts",
    "device_id",
    "expire_after",
    "legacy_topics",
    "node_id",
    "origin",
    "readout_payload",
    "state_json",
    "state_payload",
    "value_template",
]

ONLINE = "online"
OFFLINE = "offline"
#: The ``state`` of a meter's readout message (the "readout failing" binary sensor).
OK = "ok"
FAILING = "failing"

#: Home Assistant's node_id / object_id alphabet.
_HA_ID = re.compile(r"[A-Za-z0-9_-]+")
_NOT_HA_ID = re.compile(r"[^A-Za-z0-9_-]")
#: ``expire_after``: so many of the meter's intervals without a reading.
EXPIRY_INTERVALS = 2.5


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

    def readout(self, meter: str) -> str:
        return f"{self.prefix}/{meter}/readout"

    def source(self, meter: str, source: Source) -> str:
        """The topic an entity reading from ``source`` subscribes to."""
        return self.state(meter) if source is Source.STATE else self.readout(meter)

    def device(self, ident: str) -> str:
        """The device discovery topic of the device ``ident`` (see :func:`device_id`)."""
        return f"{self.discovery_prefix}/device/{ident}/config"


def _ha_id(text: str) -> str:
    """``text`` in Home Assistant's id alphabet; text that had to change gets a short hash of
    itself appended, so that ``a.b`` and ``a_b`` stay apart."""
    if _HA_ID.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{_NOT_HA_ID.sub('_', text)}_{digest}"


def node_id(meter: str) -> str:
    """The id the discovery configs of version 0.1 (one per entity) gave a meter, by its
    name: ``kamstrup382_<meter>``; kept to clear those configs (:func:`legacy_topics`) and
    as the last resort of :func:`device_id`."""
    return f"kamstrup382_{_ha_id(meter)}"


def legacy_topics(meter: str, topics: Topics) -> list[str]:
    """The per-entity discovery topics that versions before device discovery used for
    ``meter`` (``D/sensor/kamstrup382_<meter>/<register>/config``), to be cleared."""
    return [
        f"{topics.discovery_prefix}/sensor/{node_id(meter)}/{register.name}/config"
        for register in KAMSTRUP_382.registers  # the only meter those versions knew
    ]


# -- the state message --------------------------------------------------------------------------


def value_template(field: str) -> str:
    """The value template of the entity showing ``field`` of its source's JSON message: the
    one place that knows how a field is found in the message."""
    return "{{ value_json." + field + " }}"


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` (the storage gives aware UTC datetimes)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def state_payload(record: AnyReading) -> dict[str, Any]:
    """The JSON object published for one reading of either protocol: the one shape of a
    reading (:func:`~kamstrup382.documents.any_record_document`, ``docs/formats.md``; a KMP
    reading's has ``"protocol": "kmp"``, its registers keyed by name as mode A's)."""
    return any_record_document(record)


def state_json(record: AnyReading) -> str:
    return dumps(state_payload(record))


def register_field(register: Register | KmpRegister) -> str:
    """Where ``register``'s value is in a state message (``registers.energy.value``)."""
    return f"registers.{register.name}.value"


def readout_payload(
    *,
    last_reading: datetime | None,
    last_error: datetime | None,
    error_kind: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The retained message of ``P/<meter>/readout``: ``state`` is ``failing`` while the last
    readout failed (a later reading makes it ``ok``), with the last error (when, its kind, its
    text) and the time of the last reading; the "readout failing" binary sensor shows the state
    and carries the rest as attributes."""
    failing = last_error is not None and (last_reading is None or last_error > last_reading)
    return {
        "state": FAILING if failing else OK,
        "last_reading_at": None if last_reading is None else _iso(last_reading),
        "last_error_at": None if last_error is None else _iso(last_error),
        "last_error_kind": error_kind,
        "last_error": error,
    }


# -- the device ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterSetup:
    """What the configuration says of a meter that its device needs."""

    name: str
    #: The meter's reading interval (``None``: not known; no ``expire_after``).
    interval: timedelta | None = None
    #: The ``unique_id`` meter setting: the device's identity instead of the meter's own.
    unique_id: str | None = None
    #: Entities of this meter's device beyond :data:`ENTITIES` (e.g. from its pulse input).
    entities: tuple[HomeAssistantEntity, ...] = ()
    #: ``kmp``: a KMP meter (announced with its KMP registers before its first reading too);
    #: ``iec`` or ``auto``: its readings tell.
    protocol: str = "iec"
    #: The registers a KMP (or ``auto``) meter's readouts ask for (``kmp.registers``);
    #: ``None``: not configured, its readings tell.
    kmp_registers: tuple[str, ...] | None = None

    @classmethod
    def of(cls, meter: object) -> MeterSetup:
        """From a meter name or a configured meter (anything with ``name``, and optionally
        ``interval``, ``unique_id``, ``protocol`` and ``kmp.registers``)."""
        if isinstance(meter, MeterSetup):
            return meter
        if isinstance(meter, str):
            return cls(meter)
        interval = getattr(meter, "interval", None)
        unique_id = getattr(meter, "unique_id", None)
        registers = getattr(getattr(meter, "kmp", None), "registers", None)
        return cls(
            str(getattr(meter, "name")),  # noqa: B009 - any object with a name
            interval if isinstance(interval, timedelta) else None,
            unique_id if isinstance(unique_id, str) else None,
            protocol=str(getattr(meter, "protocol", "iec")),
            kmp_registers=tuple(registers) if isinstance(registers, tuple) else None,
        )


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What a reading tells about the meter as a device (``None``: not read yet)."""

    identification: str | None = None
    type_number: str | None = None
    customer_number: str | None = None
    #: A KMP meter's: its GetType answer (meter type, software revision), its GetSerialNo
    #: answer, and the registers its newest reading carried (table order).
    meter_type: int | None = None
    software_revision: str | None = None
    serial: int | None = None
    registers: tuple[str, ...] = ()

    @property
    def kmp(self) -> bool:
        """Whether the meter's readings are KMP's."""
        return self.meter_type is not None


def device_facts(record: AnyReading | None) -> DeviceFacts:
    if record is None:
        return DeviceFacts()
    if isinstance(record, KmpReadingRecord):
        return DeviceFacts(
            meter_type=record.meter_type,
            software_revision=record.software_revision,
            serial=record.serial,
            registers=tuple(r.name for r in KMP_382_REGISTERS if r.name in record.values),
        )
    return DeviceFacts(record.identification, record.type_number, record.values.customer_number)


def device_id(facts: DeviceFacts, unique_id: str | None = None) -> str | None:
    """The meter's identity in Home Assistant: ``kamstrup382_<unique_id>`` when the meter sets
    one, else ``kamstrup382_<type number>_<customer number>`` from its readings (the
    identification stands in for a type number that does not parse), for a KMP meter
    ``kamstrup382_kmp_<meter type, 4 hex digits>_<serial>`` (``kamstrup382_kmp_0382_54042``);
    ``None`` for a meter without a ``unique_id`` not read yet. Never the configured name, so a
    renamed meter keeps its device and entities."""
    if unique_id is not None:
        return f"kamstrup382_{_ha_id(unique_id)}"
    if facts.meter_type is not None and facts.serial is not None:
        return f"kamstrup382_kmp_{facts.meter_type:04x}_{facts.serial}"
    if facts.customer_number is None:
        return None
    model = facts.type_number or facts.identification or "unknown"
    return f"kamstrup382_{_ha_id(f'{model}_{facts.customer_number}')}"


def expire_after(interval: timedelta | None) -> int | None:
    """Seconds without a reading after which a register entity becomes unavailable: about
    :data:`EXPIRY_INTERVALS` intervals (two readings missed, the third late); ``None``: none."""
    if interval is None or interval <= timedelta(0):
        return None
    return math.ceil(interval.total_seconds() * EXPIRY_INTERVALS)


def _decoded(type_number: str | None) -> TypeNumber | None:
    if type_number is None:
        return None
    try:
        return parse_type_number(type_number)
    except TypeNumberError:  # stored text that is not a valid 382 type number
        return None


def _model(facts: DeviceFacts) -> str:
    if facts.meter_type is not None:
        known = KMP_MODELS.get(facts.meter_type)
        return known or f"382 (KMP, meter type 0x{facts.meter_type:04x})"
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


@cache
def _support_url() -> str | None:
    """The package's support address from its metadata (``Project-URL``: an issue tracker
    first, else its home page); ``None`` when the installed package names none."""
    try:
        meta = metadata.metadata("kamstrup382")
    except metadata.PackageNotFoundError:
        return None
    urls: dict[str, str] = {}
    for entry in meta.get_all("Project-URL") or ():
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    for label in ("issues", "bug tracker", "support", "homepage", "source"):
        if urls.get(label, "").startswith(("http://", "https://")):
            return urls[label]
    home = meta["Home-page"] if "Home-page" in meta else None  # noqa: SIM401 - no .get()
    return home if home and home.startswith(("http://", "https://")) else None


def origin() -> dict[str, str]:
    """The ``origin`` block: this program, its version and where to get support."""
    block = {"name": "kamstrup382", "sw_version": _version()}
    support = _support_url()
    if support is not None:
        block["support_url"] = support
    return block


def device(
    meter: str, facts: DeviceFacts, ident: str, dashboard_url: str | None = None
) -> dict[str, Any]:
    """The ``device`` block: one Home Assistant device per meter, named as configured;
    ``configuration_url`` is the meter's page of the dashboard when its address is known."""
    block: dict[str, Any] = {
        "identifiers": [ident],
        "name": meter,
        "manufacturer": _manufacturer(facts),
        "model": _model(facts),
    }
    if facts.type_number is not None:
        block["model_id"] = facts.type_number
    if facts.customer_number is not None:
        block["serial_number"] = facts.customer_number
    if facts.meter_type is not None:
        block["model_id"] = f"0x{facts.meter_type:04x}"
    if facts.serial is not None:
        block["serial_number"] = str(facts.serial)
    if facts.software_revision is not None:
        block["sw_version"] = facts.software_revision
    if dashboard_url is not None:
        block["configuration_url"] = f"{dashboard_url.rstrip('/')}/meters/{quote(meter, safe='')}"
    return block


def _register_entity(register: Register | KmpRegister) -> HomeAssistantEntity:
    """The sensor of a mode A register (its precision: the decimals its dialects print) or of
    a KMP one (its description's)."""
    if isinstance(register, KmpRegister):
        sensor = HOME_ASSISTANT_KMP[register.name]
        precision = sensor.precision
    else:
        sensor = HOME_ASSISTANT[register.name]
        precision = None if register.kind is RegisterKind.TEXT else register.decimals
    return HomeAssistantEntity(
        key=register.name,
        name=sensor.name,
        field=register_field(register),
        device_class=sensor.device_class,
        state_class=sensor.state_class,
        unit=register.unit,
        icon=sensor.icon,
        precision=precision,
        diagnostic=sensor.diagnostic,
        expires=True,
    )


#: Every entity of a meter's device, in order: its registers, then its status.
ENTITIES: tuple[HomeAssistantEntity, ...] = (
    *(_register_entity(register) for register in REGISTERS),
    *HOME_ASSISTANT_STATUS,
)
#: Every entity of a KMP meter's device, in order: its registers, then its status.
KMP_ENTITIES: tuple[HomeAssistantEntity, ...] = (
    *(_register_entity(register) for register in KMP_382_REGISTERS),
    *HOME_ASSISTANT_STATUS,
)


def _availability(topics: Topics, meter: str | None) -> list[dict[str, str]]:
    """Available while the collector is online and (``meter``) the meter's last readout
    succeeded."""
    entries = [topics.status] + ([] if meter is None else [topics.availability(meter)])
    return [
        {"topic": topic, "payload_available": ONLINE, "payload_not_available": OFFLINE}
        for topic in entries
    ]


def _component(
    entity: HomeAssistantEntity, meter: str, ident: str, topics: Topics, expiry: int | None
) -> dict[str, Any]:
    """One entry of the device config's ``cmps``: what differs from the shared options."""
    config: dict[str, Any] = {
        "platform": entity.platform,
        "name": entity.name,
        "unique_id": f"{ident}_{entity.key}",
        "value_template": value_template(entity.field),
    }
    if entity.source is not Source.STATE:
        config["state_topic"] = topics.source(meter, entity.source)
    if entity.attributes:
        config["json_attributes_topic"] = topics.source(meter, entity.source)
    if not entity.follows_meter:
        config["availability"] = _availability(topics, None)
    optional = {
        "device_class": entity.device_class,
        "state_class": entity.state_class,
        "unit_of_measurement": entity.unit,
        "suggested_display_precision": entity.precision,
        "icon": entity.icon,
        "payload_on": entity.payload_on,
        "payload_off": entity.payload_off,
        "entity_category": "diagnostic" if entity.diagnostic else None,
        "expire_after": expiry if entity.expires else None,
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    return config


def _kmp_names(setup: MeterSetup, facts: DeviceFacts) -> frozenset[str]:
    """The registers of a KMP meter's device: those its readouts ask for (``kmp.registers``),
    else those its newest reading carried."""
    if setup.kmp_registers is not None:
        return frozenset(setup.kmp_registers)
    return frozenset(facts.registers)


def device_config(
    setup: MeterSetup,
    facts: DeviceFacts,
    ident: str,
    topics: Topics,
    *,
    dashboard_url: str | None = None,
    entities: Iterable[HomeAssistantEntity] | None = None,
) -> dict[str, Any]:
    """The device discovery config of one meter (``D/device/<ident>/config``): the device,
    the origin, one component per entity, and the options they share (the state topic, the
    availability). Of a mode A meter's registers, those the meter's dialect prints (the
    685-382's until its first reading names it): a 382C's device has tariffs 3 and 4 and no
    last month's peak, and a device announced before its first reading loses the components
    it does not have. A KMP meter (its readings say so, or ``protocol = "kmp"``) has
    :data:`KMP_ENTITIES`, of its registers those it is configured to read (else those its
    newest reading carried). A ``protocol = "auto"`` meter announced before its first reading
    (a ``unique_id``) has its status entities only."""
    expiry = expire_after(setup.interval)
    kmp = facts.kmp or (setup.protocol == "kmp" and facts.customer_number is None)
    registers: frozenset[str]
    if kmp:
        names = _kmp_names(setup, facts)
        registers = frozenset(r.name for r in KMP_382_REGISTERS)
    else:
        names = (dialect_of_stored(facts.identification) or KAMSTRUP_382).names
        registers = frozenset(REGISTER_BY_NAME)
        if setup.protocol == "auto" and facts.customer_number is None:
            names = frozenset()  # mode A or KMP: its first reading tells; no registers until
    chosen = (KMP_ENTITIES if kmp else ENTITIES) if entities is None else entities
    kept = (e for e in chosen if e.key not in registers or e.key in names)
    every = (*kept, *setup.entities)
    return {
        "dev": device(setup.name, facts, ident, dashboard_url),
        "o": origin(),
        "cmps": {
            entity.key: _component(entity, setup.name, ident, topics, expiry) for entity in every
        },
        "state_topic": topics.state(setup.name),
        "availability": _availability(topics, setup.name),
        "availability_mode": "all",
    }
