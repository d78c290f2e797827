"""The meters' Home Assistant devices of one MQTT output: their ids, what to announce, what to
clear. No I/O of its own: it plans, the storage remembers (:meth:`Storage.announce`), and
:mod:`kamstrup382.outputs.mqtt` publishes the messages these methods return, in their order.

- **Identity.** A device is keyed on the meter itself (:func:`~.discovery.device_id`: the
  ``unique_id`` setting, or type number and customer number from its readings), never on its
  configured name. Two configured meters that come out with one id (two meters whose customer
  number was never set) would be one device: the later ones in the config fall back to an id
  from their names, and the log says to give them a ``unique_id``.
- **Ghosts.** Each announcement is recorded in the storage with a lease
  (:mod:`kamstrup382.storage.announcements`). At start, when Home Assistant comes online and
  every half lease, the devices that no running collector announces are cleared: an empty
  retained config (Home Assistant removes the device and its entities) and empty retained
  availability, readout and state messages of the meter's name.
- **Renames.** A device recorded under another meter name keeps its id (and so its entities
  and their history); the old name's retained messages are cleared.
- **Upgrades.** A device recorded for the first time first clears the per-entity configs that
  versions before device discovery published for its meter's name
  (``D/sensor/kamstrup382_<name>/<register>/config``), so an upgrade leaves no duplicates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kamstrup382.outputs.discovery import (
    DeviceFacts,
    MeterSetup,
    Topics,
    device_config,
    device_id,
    expire_after,
    legacy_topics,
    node_id,
)

__all__ = ["Devices", "Plan"]

log = logging.getLogger(__name__)

#: A retained message to publish: (topic, payload); an empty payload clears the topic.
Retained = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Plan:
    """Devices to announce: device id -> meter name, made in the event loop."""

    devices: Mapping[str, str]


class Devices:
    """What one MQTT output knows of its meters' devices (see the module documentation)."""

    def __init__(
        self,
        topics: Topics,
        meters: Iterable[MeterSetup],
        *,
        dashboard_url: str | None = None,
    ) -> None:
        self.topics = topics
        self.dashboard_url = dashboard_url
        self.setups: dict[str, MeterSetup] = {m.name: m for m in meters}
        #: Every meter's facts from its newest reading (configured meters first, in order).
        self.facts: dict[str, DeviceFacts] = {name: DeviceFacts() for name in self.setups}
        self._collided: set[str] = set()
        self._ids: dict[str, str] | None = None  # ids(), until the facts change
        # the newest config built per device: Home Assistant's restarts announce again
        self._configs: dict[str, tuple[str, DeviceFacts, Retained]] = {}

    @property
    def configured(self) -> bool:
        return bool(self.setups)

    def reconfigure(self, meters: Iterable[MeterSetup]) -> None:
        """The configured meters are now ``meters`` (a reloaded configuration): a meter no
        longer configured is no longer planned (its device is cleared as a ghost)."""
        self.setups = {m.name: m for m in meters}
        for name in self.setups:
            self.facts.setdefault(name, DeviceFacts())
        for name in [n for n in self.facts if n not in self.setups]:
            del self.facts[name]  # the same dict the output holds: changed in place
        self._ids = None
        self._configs.clear()

    def setup(self, meter: str) -> MeterSetup:
        return self.setups.get(meter) or MeterSetup(meter)

    def update(self, meter: str, facts: DeviceFacts) -> None:
        """``meter``'s facts from its newest reading."""
        if self.facts.get(meter) != facts:
            self.facts[meter] = facts
            self._ids = None

    def unknown(self, meter: str) -> bool:
        """Whether ``meter`` had no device id so far (an unread meter without ``unique_id``)."""
        return meter not in self.ids()

    def ids(self) -> dict[str, str]:
        """meter -> device id of every meter that has one, collisions resolved (config
        order: the first keeps the id)."""
        if self._ids is None:
            self._ids = self._find_ids()
        return self._ids

    def _find_ids(self) -> dict[str, str]:
        taken: dict[str, str] = {}
        result: dict[str, str] = {}
        for meter, facts in self.facts.items():
            ident = device_id(facts, self.setup(meter).unique_id)
            if ident is None:
                continue
            if ident in taken:
                if meter not in self._collided:
                    self._collided.add(meter)
                    log.warning(
                        "mqtt: meters %r and %r are the same Home Assistant device %s (same "
                        "type and customer number or serial); %r is announced by its name "
                        "instead: give each a unique_id in the config",
                        taken[ident],
                        meter,
                        ident,
                        meter,
                    )
                ident = f"{node_id(meter)}_by_name"
            taken[ident] = meter
            result[meter] = ident
        return result

    def unidentified(self) -> list[MeterSetup]:
        """The configured meters without an identity yet (never read, no ``unique_id``)."""
        ids = self.ids()
        return [setup for name, setup in self.setups.items() if name not in ids]

    def clearing_wait(self, lease: float) -> float:
        """Seconds after the start before ghosts may be cleared: a renamed meter is known by
        its first reading under its new name, and its device must not be cleared before (it
        would lose its entities). So while a configured meter has no identity, clearing waits
        up to its expiry (2.5 intervals; without an interval, ``lease``); then a meter that
        still does not answer no longer holds the others' clearing back."""
        waits = [expire_after(setup.interval) or lease for setup in self.unidentified()]
        return float(max(waits, default=0))

    def plan(self, meters: Iterable[str] | None = None) -> Plan:
        """The devices of ``meters`` (``None``: of all meters) that can be announced."""
        ids = self.ids()
        chosen = ids if meters is None else {m: ids[m] for m in meters if m in ids}
        return Plan({ident: meter for meter, ident in chosen.items()})

    def config(self, ident: str, meter: str) -> Retained:
        """The device config of ``meter`` as device ``ident`` (built once per name and facts;
        may run in a worker thread: it reads the facts, never iterates them)."""
        facts = self.facts.get(meter, DeviceFacts())
        cached = self._configs.get(ident)
        if cached is not None and cached[:2] == (meter, facts):
            return cached[2]
        payload = device_config(
            self.setup(meter), facts, ident, self.topics, dashboard_url=self.dashboard_url
        )
        retained = self.topics.device(ident), json.dumps(payload, separators=(",", ":"))
        self._configs[ident] = (meter, facts, retained)
        return retained

    def _meter_topics(self, meter: str) -> list[str]:
        t = self.topics
        return [t.availability(meter), t.readout(meter), t.state(meter)]

    def announcements(
        self, plan: Plan, before: Mapping[str, str | None], *, only_new: bool = False
    ) -> list[Retained]:
        """The messages announcing ``plan``, given what the storage recorded ``before``
        (:meth:`Storage.announce`): clearing first (an upgrade's per-entity configs, a renamed
        meter's old messages), then the device configs (``only_new``: only of devices the
        storage did not hold, e.g. rows another collector cleared)."""
        clears: list[Retained] = []
        configs: list[Retained] = []
        for ident, meter in plan.devices.items():
            old = before.get(ident)
            if old is None:
                clears += [(topic, "") for topic in legacy_topics(meter, self.topics)]
            elif old != meter and old not in self.facts:
                log.info(
                    "mqtt: meter %r was %r: its device %s keeps its entities", meter, old, ident
                )
                clears += [(topic, "") for topic in self._meter_topics(old)]
            if not only_new or old is None:
                configs.append(self.config(ident, meter))
        return clears + configs

    def clearing(self, stale: Mapping[str, str]) -> list[Retained]:
        """The messages clearing devices no running collector announces (device id -> meter
        name): their configs, and the retained messages of names no meter here has."""
        messages: list[Retained] = []
        for ident, meter in stale.items():
            log.info(
                "mqtt: meter %r (device %s) is no longer configured: clearing it", meter, ident
            )
            messages.append((self.topics.device(ident), ""))
            if meter not in self.facts:
                messages += [(topic, "") for topic in self._meter_topics(meter)]
        return messages
