"""The Home Assistant side of the MQTT output: announcing the meters' devices, clearing the
ones no longer configured, and each meter's availability and readout messages.

:class:`HomeAssistantSide` is mixed into :class:`~kamstrup382.outputs.mqtt.MqttOutput`, which
owns the connection and the state these methods read; what to announce and clear is planned
by :class:`~kamstrup382.outputs.ha_devices.Devices`, and remembered by the storage
(:mod:`kamstrup382.storage.announcements`).
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiomqtt

from kamstrup382.errors import Kamstrup382Error
from kamstrup382.outputs.discovery import DeviceFacts, Topics, legacy_topics, readout_payload
from kamstrup382.outputs.ha_devices import Devices, Plan
from kamstrup382.outputs.mqtt_settings import MqttSettings
from kamstrup382.storage import Storage

__all__ = ["Disconnected", "HomeAssistantSide", "Message", "as_json"]

log = logging.getLogger("kamstrup382.outputs.mqtt")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: str
    qos: int
    retain: bool


class Disconnected(Kamstrup382Error):
    """A broker operation failed: end this connection and reconnect."""


def as_json(config: Mapping[str, Any]) -> str:
    return json.dumps(config, separators=(",", ":"))


class HomeAssistantSide(abc.ABC):
    """Announcing devices and sending availability; see the module documentation."""

    settings: MqttSettings
    topics: Topics
    announcements_key: str
    last_error: str | None
    _devices: Devices
    _storage: Storage | None
    _meters: dict[str, DeviceFacts]
    _announce_all: bool
    _swept: bool
    _announced: dict[str, DeviceFacts]
    _upkeep_at: float
    _started_at: float
    _available: dict[str, str]
    _available_sent: dict[str, str]
    _readout_sent: dict[str, str]
    _read_at: dict[str, datetime]
    _failed_at: dict[str, datetime]
    _errors: dict[str, tuple[str, str]]

    @abc.abstractmethod
    async def _publish_many(self, client: aiomqtt.Client, messages: Sequence[Message]) -> int:
        """Publish ``messages`` in order; how many from the start were acknowledged."""

    # -- Home Assistant devices ------------------------------------------------------------------
    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.outbox_lease)

    async def _announce(self, plan: Plan, *, only_new: bool = False) -> list[Message]:
        """Record ``plan`` in the storage and return the messages announcing it (see
        :meth:`Devices.announcements`); without the storage's memory, the configs alone."""
        assert self._storage is not None
        try:
            before = await asyncio.to_thread(
                self._storage.announce,
                self.announcements_key,
                self.settings.client_id,
                dict(plan.devices),
                self._lease,
            )
        except Kamstrup382Error as exc:
            log.warning("mqtt: could not record the announced devices (%s); announcing anyway", exc)
            if only_new:
                return []
            before = dict(plan.devices)
        # building thousands of configs takes a while: off the event loop, which times readouts
        retained = await asyncio.to_thread(
            self._devices.announcements, plan, before, only_new=only_new
        )
        return [Message(topic, payload, 1, True) for topic, payload in retained]

    async def _send_announcements(self, client: aiomqtt.Client) -> None:
        """Every meter's device config when Home Assistant (re)started or at (re)connection;
        every half lease: renew the announcements, and clear the devices no running collector
        announces (ghosts) at both."""
        if not self.settings.discovery:
            return
        full = self._announce_all
        if not full and time.monotonic() < self._upkeep_at:
            return
        assert self._storage is not None
        storage = self._storage
        self._announce_all = False
        try:
            plan = self._devices.plan()
            swept = await self._legacy_sweep() if full and not self._swept else []
            messages = swept + await self._announce(plan, only_new=not full)
            alone = not storage.shares_meters
            clear_at = self._started_at + self._devices.clearing_wait(self.settings.outbox_lease)
            stale: dict[str, str] = {}
            try:
                if time.monotonic() >= clear_at:
                    stale = await asyncio.to_thread(
                        storage.stale_announcements,
                        self.announcements_key,
                        self.settings.client_id,
                        list(plan.devices),
                        everyone=alone,
                    )
            except Kamstrup382Error as exc:
                log.warning("mqtt: could not read the announced devices: %s", exc)
            clearing = [Message(t, p, 1, True) for t, p in self._devices.clearing(stale)]
            messages = clearing + messages
            sent = await self._publish_many(client, messages)
        except BaseException:
            self._announce_all = self._announce_all or full
            raise
        if sent < len(messages):
            self._announce_all = self._announce_all or full
            raise Disconnected(f"announcing failed: {self.last_error}")
        for meter in plan.devices.values():
            self._announced[meter] = self._meters.get(meter, DeviceFacts())
        self._upkeep_at = time.monotonic() + self.settings.outbox_lease / 2
        if time.monotonic() < clear_at:
            self._upkeep_at = min(self._upkeep_at, clear_at)
        if stale:
            try:
                await asyncio.to_thread(
                    storage.forget_announcements,
                    self.announcements_key,
                    self.settings.client_id,
                    list(stale),
                    everyone=alone,
                )
            except Kamstrup382Error as exc:
                log.warning("mqtt: could not forget the cleared devices (cleared again): %s", exc)

    async def _legacy_sweep(self) -> list[Message]:
        """Once, at the first announcement after an upgrade (nothing recorded for this output
        yet): clear the per-entity configs earlier versions published for stored meters that
        are no longer configured, which no device announcement would clear."""
        assert self._storage is not None
        self._swept = True
        if not self._devices.configured:
            return []  # every stored meter is announced, and so cleared with its device
        try:
            recorded = await asyncio.to_thread(
                self._storage.stale_announcements,
                self.announcements_key,
                self.settings.client_id,
                [],
                everyone=True,
            )
            if recorded:
                return []
            stored = await asyncio.to_thread(self._storage.meters)
        except Kamstrup382Error as exc:
            log.warning("mqtt: could not list the stored meters: %s", exc)
            return []
        gone = [meter for meter in stored if meter not in self._meters]
        if gone:
            log.info("mqtt: clearing the per-entity configs of %d unconfigured meters", len(gone))
        return [Message(t, "", 1, True) for m in gone for t in legacy_topics(m, self.topics)]

    async def _release_announcements(self) -> None:
        """End this output's leases on its announcements (best effort: else they expire), so
        that the next start may clear what it no longer configures."""
        if self._storage is None or not self.settings.discovery:
            return
        try:
            await asyncio.to_thread(
                self._storage.release_announcements,
                self.announcements_key,
                self.settings.client_id,
            )
        except Kamstrup382Error as exc:
            log.warning("mqtt: releasing the announced devices failed (they expire): %s", exc)

    async def _send_availability(self, client: aiomqtt.Client) -> None:
        """Each meter's availability and readout message, when they changed."""
        changes = [
            (self.topics.availability(meter), payload, self._available_sent, meter)
            for meter, payload in self._available.items()
            if self._available_sent.get(meter) != payload
        ]
        for meter in self._available:
            kind, error = self._errors.get(meter, (None, None))
            readout = as_json(
                readout_payload(
                    last_reading=self._read_at.get(meter),
                    last_error=self._failed_at.get(meter),
                    error_kind=kind,
                    error=error,
                )
            )
            if self._readout_sent.get(meter) != readout:
                changes.append((self.topics.readout(meter), readout, self._readout_sent, meter))
        messages = [Message(topic, payload, 1, True) for topic, payload, _, _ in changes]
        sent = await self._publish_many(client, messages)
        for _, payload, memory, meter in changes[:sent]:
            memory[meter] = payload
        if sent < len(messages):
            raise Disconnected(f"publishing availability failed: {self.last_error}")
