"""MQTT power output: the live power of the meters with pulse inputs, and the "Tariff" select
of those with a tariff output, for Home Assistant.

It uses the ``[mqtt]`` table (:class:`~kamstrup382.outputs.mqtt_settings.MqttSettings`) with a
connection of its own (client id ``<client_id>-power``, last will ``offline`` on
``P/power_status``), apart from the register output's outbox: a live figure is worth sending
only now, so it is never queued for later. Topics and payloads: :mod:`.power_topics`.

A select's command (``1`` or ``2`` on ``P/<meter>/tariff/set``) goes to the collector's tariff
control (:class:`~kamstrup382.pulses.tariff.TariffBoard`); its state (``P/<meter>/tariff``,
retained) is what the module last set, published when that changes.

It connects at start when some meter has a tariff output, else at the first power update, and
again with backoff (``reconnect_delay`` doubling to ``reconnect_max``) whenever the broker goes
away. Each connection announces the sensors of every meter heard so far (again when Home
Assistant says ``online`` on its status topic), then sends what is due: per meter only the
newest update waits, so a slow broker sees the latest figure, never a backlog. The collector
decides what is due (:meth:`~kamstrup382.pulses.live.LiveMeter.due`: at most every
``power_interval``, at once on a large change).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from importlib import metadata

import aiomqtt

from kamstrup382.errors import UsageError
from kamstrup382.outputs.base import Output
from kamstrup382.outputs.discovery import (
    OFFLINE,
    ONLINE,
    DeviceFacts,
    device_facts,
    device_id,
)
from kamstrup382.outputs.mqtt_settings import MqttSettings
from kamstrup382.outputs.power_topics import (
    PowerTopics,
    power_configs,
    power_payload,
    tariff_config,
)
from kamstrup382.pulses.live import PowerUpdate
from kamstrup382.pulses.tariff import TariffBoard, TariffState
from kamstrup382.storage import AnyReading, FailureRecord, Storage

__all__ = ["PowerMqttOutput"]

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return metadata.version("kamstrup382")
    except metadata.PackageNotFoundError:
        return "unknown"


class PowerMqttOutput(Output):
    """Publishes each meter's due power updates (see the module doc). ``published``: power
    messages handed to the broker; ``connected``: set while a session is up."""

    name = "mqtt-power"
    uses_outbox = False

    def __init__(
        self,
        settings: MqttSettings,
        unique_ids: Mapping[str, str | None] | None = None,
        dashboard_url: str | None = None,
    ) -> None:
        self.settings = settings
        #: per meter: its ``unique_id`` setting (its device's identity), and the dashboard
        self.unique_ids = dict(unique_ids or {})
        self.dashboard_url = dashboard_url
        self.topics = PowerTopics(settings.topics)
        self.published = 0
        self.connected = asyncio.Event()
        self._facts: dict[str, DeviceFacts | None] = {}  # None: to be read from the storage
        self._announced: set[str] = set()  # meters whose sensors this session announced
        self._pending: dict[str, PowerUpdate] = {}
        self._availability: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._storage: Storage | None = None
        self._stopping = False
        self._board: TariffBoard | None = None
        self._tariffs: dict[str, TariffState] = {}  # to publish

    def control(self, board: TariffBoard) -> None:
        self._board = board
        for meter in board.meters:
            self._facts.setdefault(meter, None)
        board.listen(self._tariff_set)

    def _tariff_set(self, state: TariffState | None) -> None:
        if state is not None and state.tariff is not None:
            self._tariffs[state.meter] = state
            self._wake.set()

    # -- Output ----------------------------------------------------------------------------
    async def start(self, storage: Storage) -> None:
        self._storage = storage
        if self._board is not None and self._board.meters:
            self._task = asyncio.create_task(self._run(), name="k382-mqtt-power")

    async def publish(
        self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]
    ) -> None:
        for record in readings:  # the device's identity for the discovery configs (either protocol)
            facts = device_facts(record)
            if self._facts.get(record.meter) != facts:
                self._facts[record.meter] = facts
                self._announced.discard(record.meter)
                self._wake.set()

    def power(self, update: PowerUpdate) -> None:
        meter = update.meter
        if self._availability.get(meter) != update.connected:
            self._availability[meter] = update.connected
            self._wake.set()
        if meter not in self._facts:
            self._facts[meter] = None
            self._wake.set()
        if update.report:
            self._pending[meter] = update
            self._wake.set()
        if self._task is None and not self._stopping:
            self._task = asyncio.create_task(self._run(), name="k382-mqtt-power")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(task, self.settings.stop_timeout)
            except TimeoutError:
                log.warning("mqtt power: not stopped within %.1f s", self.settings.stop_timeout)

    # -- the connection --------------------------------------------------------------------
    def _command_topics(self) -> dict[str, str]:
        assert self._board is not None
        return {self.topics.tariff_command(meter): meter for meter in self._board.meters}

    async def _stored_facts(self, meter: str) -> DeviceFacts:
        record = None
        if self._storage is not None:
            try:
                record = await asyncio.to_thread(self._storage.latest, meter)
            except Exception:  # the facts fill in with the next reading
                log.debug("mqtt power: no stored reading of %s", meter, exc_info=True)
        return device_facts(record)

    def _client(self, tls: ssl.SSLContext | None) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=f"{s.client_id}-power",
            protocol=s.protocol_version,
            will=aiomqtt.Will(self.topics.status, OFFLINE, qos=1, retain=True),
            keepalive=s.keepalive,
            timeout=s.timeout,
            tls_context=tls,
            tls_insecure=True if (tls is not None and s.insecure) else None,
            logger=log,
        )

    async def _run(self) -> None:
        s = self.settings
        delay = s.reconnect_delay
        tls = await asyncio.to_thread(s.tls_context)
        while not self._stopping:
            try:
                async with self._client(tls) as client:
                    delay = s.reconnect_delay
                    log.info("mqtt power: connected to %s", s.url)
                    await self._session(client)
                return
            except (aiomqtt.MqttError, OSError) as exc:
                self.connected.clear()
                if self._stopping:
                    return
                log.warning("mqtt power: %s; reconnecting in %.1f s", exc, delay)
            except Exception:  # a bug must not end the live power for good: say so loudly
                self.connected.clear()
                if self._stopping:
                    return
                log.exception("mqtt power: failed; reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped(), delay)
            delay = min(delay * 2, s.reconnect_max)

    async def _stopped(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()

    async def _session(self, client: aiomqtt.Client) -> None:
        self._announced.clear()
        await client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        sent_availability: dict[str, bool] = {}
        listener = None
        commands = [] if self._board is None else list(self._board.meters)
        for meter in commands:
            await client.subscribe(self.topics.tariff_command(meter), qos=1)
        if self.settings.discovery:
            await client.subscribe(self.settings.topics.ha_status, qos=1)
        if self.settings.discovery or commands:
            listener = asyncio.create_task(self._listen(client))
        for meter in commands:  # a new session: the retained state said again
            self._tariff_set(self._board.state(meter) if self._board is not None else None)
        self.connected.set()
        try:
            while True:
                self._wake.clear()
                for meter, known in list(self._facts.items()):
                    facts = known if known is not None else await self._stored_facts(meter)
                    self._facts.setdefault(meter, facts)
                    if self._facts[meter] is None:
                        self._facts[meter] = facts
                    ident = device_id(facts, self.unique_ids.get(meter))
                    if self.settings.discovery and meter not in self._announced and ident:
                        # (a meter without unique_id: once its first reading says who it is)
                        url = self.dashboard_url
                        configs = []
                        if meter in self._availability:  # a pulse input
                            configs += power_configs(
                                meter,
                                facts,
                                self.topics,
                                _version(),
                                ident=ident,
                                dashboard_url=url,
                            )
                        if self._board is not None and meter in self._board.meters:
                            configs.append(
                                tariff_config(
                                    meter,
                                    facts,
                                    self.topics,
                                    _version(),
                                    ident=ident,
                                    dashboard_url=url,
                                )
                            )
                        for topic, config in configs:
                            await client.publish(topic, _json(config), qos=1, retain=True)
                        self._announced.add(meter)
                for meter, up in list(self._availability.items()):
                    if sent_availability.get(meter) != up:
                        payload = ONLINE if up else OFFLINE
                        await client.publish(
                            self.topics.availability(meter), payload, qos=1, retain=True
                        )
                        sent_availability[meter] = up
                tariffs, self._tariffs = self._tariffs, {}
                for meter, state in tariffs.items():
                    await client.publish(
                        self.topics.tariff(meter), str(state.tariff), qos=1, retain=True
                    )
                pending, self._pending = self._pending, {}
                for meter, update in pending.items():
                    await client.publish(self.topics.power(meter), power_payload(update), qos=0)
                    self.published += 1
                if self._stopping:
                    await client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
                    return
                if listener is not None and listener.done():
                    listener.result()  # the connection ended under the listener: raise it
                await self._wake.wait()
        finally:
            self.connected.clear()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await listener

    async def _listen(self, client: aiomqtt.Client) -> None:
        try:
            commands = {} if self._board is None else self._command_topics()
            async for message in client.messages:
                topic = str(message.topic)
                payload = message.payload
                text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
                if topic == self.settings.topics.ha_status and text == ONLINE:
                    self._announced.clear()  # Home Assistant restarted: announce again
                    self._wake.set()
                elif topic in commands and self._board is not None:
                    try:
                        self._board.command(commands[topic], int(text), "home assistant")
                    except (ValueError, UsageError):
                        log.warning("mqtt power: %s: %r is not a tariff (1 or 2)", topic, text)
        finally:
            self._wake.set()  # the session loop notices the end of the connection


def _json(config: object) -> str:
    return json.dumps(config, separators=(",", ":"))
