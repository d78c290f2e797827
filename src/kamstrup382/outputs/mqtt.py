"""MQTT output: each reading as JSON on ``<topic_prefix>/<meter>/state``, Home Assistant
discovery, availability with a last will, and a durable outbox so that outages lose nothing.

The ``[mqtt]`` table is described and checked in :mod:`kamstrup382.outputs.mqtt_settings`.

How nothing is lost: the collector stores each new reading and queues it in the storage's
outbox in one transaction (``uses_outbox``). This output only ever publishes from the outbox,
oldest first, and removes an entry after the broker acknowledged it (QoS 1 or 2). While the
broker is unreachable entries wait in the outbox (a file or a table, so they survive
restarts); the output reconnects with backoff, and at once when a new batch arrives, and then
publishes the backlog in order. ``publish`` only wakes the sender: it never blocks the
collector and never raises.

Several collectors on one database share one outbox: each round, this output claims whole
meters of it under its ``client_id`` (``Storage.outbox_pending(holder=...)``), publishes their
oldest entries in order, then removes what the broker acknowledged and gives the meters back
in one transaction (on failure it gives them back without removing anything). So each reading
is published by one collector, and a meter's readings in the order they were stored, whoever
stored them. A collector that dies mid-round holds its meters until ``outbox_lease`` runs out;
then the others take them over: they look at the outbox at least every ``outbox_lease / 2``.

A broker that refuses the login (CONNACK "bad user name or password" or "not authorized":
MQTT 3.1.1 codes 4 and 5, MQTT 5 0x86 and 0x87) is not "unreachable": the state is
``login_refused``, the log says so as an error, and the next try waits ``login_retry``
(doubling up to ``login_retry_max``; new readings do not cut that wait short), so that a wrong
password does not hammer the broker. Readings wait in the outbox meanwhile. The state goes to
the metrics (:meth:`MqttOutput.health`) and to a state file that ``k382 status`` reads
(:mod:`kamstrup382.outputs.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from kamstrup382.errors import Kamstrup382Error
from kamstrup382.outputs.base import Output
from kamstrup382.outputs.discovery import (
    OFFLINE,
    ONLINE,
    DeviceFacts,
    MeterSetup,
    device_facts,
    state_json,
)
from kamstrup382.outputs.ha_devices import Devices
from kamstrup382.outputs.health import (
    CONNECTED,
    LOGIN_REFUSED,
    STATES,
    STOPPED,
    UNREACHABLE,
)
from kamstrup382.outputs.mqtt_devices import Disconnected as _Disconnected
from kamstrup382.outputs.mqtt_devices import HomeAssistantSide
from kamstrup382.outputs.mqtt_devices import Message as _Message
from kamstrup382.outputs.mqtt_settings import MqttSettings
from kamstrup382.outputs.outbox_worker import OutboxWorker, WorkerLog
from kamstrup382.storage import (
    MISSED,
    AnyReading,
    FailureRecord,
    OutboxItem,
    Storage,
)

__all__ = ["STATES", "MqttOutput", "MqttSettings", "login_refused"]

log = logging.getLogger(__name__)


#: CONNACK codes of a refused login: MQTT 3.1.1 (4 bad user name or password, 5 not
#: authorized) and MQTT 5 (0x86, 0x87; paho reports 3.1.1's codes as these too).
_LOGIN_REFUSED_CODES = frozenset({4, 5, 0x86, 0x87})


def login_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the broker refusing the credentials (not an outage)."""
    if not isinstance(exc, MqttConnectError):
        return False
    code = exc.rc if isinstance(exc.rc, int) or exc.rc is None else exc.rc.value
    return code in _LOGIN_REFUSED_CODES


class MqttOutput(OutboxWorker, HomeAssistantSide, Output):
    """Publishes stored readings to an MQTT broker, from the durable outbox, in order.

    Attributes for monitoring: ``connected`` (an event, set while a session with the broker
    is up), ``state`` (one of :data:`STATES`), ``connect_attempts`` (connections tried),
    ``connections`` (sessions opened), ``login_refusals`` (logins the broker refused),
    ``published`` (state messages acknowledged), ``last_error`` (text of the last broker
    problem); all of them at once in :meth:`health`.
    """

    name = "mqtt"
    uses_outbox = True
    worker_log = WorkerLog(log, queue="outbox", worker="publisher", unflushed="outbox not flushed")

    def __init__(
        self,
        settings: MqttSettings,
        meters: Sequence[str | MeterSetup] = (),
        *,
        dashboard_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self._devices = Devices(
            self.topics,
            [MeterSetup.of(m) for m in meters],
            dashboard_url=settings.dashboard_url(dashboard_url),
        )
        #: The key of this output's announcements in the storage: the discovery prefix names
        #: the Home Assistant installation (collectors sharing a database share it).
        self.announcements_key = f"mqtt:{settings.discovery_prefix}"
        self._upkeep_at = 0.0  # monotonic: when to renew announcements and clear ghosts
        self._started_at = 0.0  # monotonic: when start() was called
        self._swept = False  # the old per-entity configs of unconfigured meters (once)
        self.connections = 0
        self.connect_attempts = 0
        self.login_refusals = 0
        self.published = 0
        self._keep_worker(settings.state_file)
        self._meters = self._devices.facts
        self._errors: dict[str, tuple[str, str]] = {}  # meter -> kind, message of the newest
        self._readout_sent: dict[str, str] = {}
        self._announce_all = True
        self._announced: dict[str, DeviceFacts] = {}  # meter -> the facts it was announced with
        # per meter: newest reading published, newest failure seen, availability wanted/sent
        self._read_at: dict[str, datetime] = {}
        self._failed_at: dict[str, datetime] = {}
        self._available: dict[str, str] = {}
        self._available_sent: dict[str, str] = {}
        self._connected: asyncio.Event | None = None

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, Any],
        meters: Sequence[Any] = (),
        *,
        dashboard_url: str | None = None,
    ) -> MqttOutput:
        """From the ``[mqtt]`` table; ``meters``: names or configured meters (``name``,
        ``interval``, ``unique_id``); ``dashboard_url``: the dashboard's address when it is
        served (``mqtt.configuration_url`` wins over it)."""
        setups = [MeterSetup.of(m) for m in meters]
        return cls(MqttSettings.parse(section), setups, dashboard_url=dashboard_url)

    @property
    def connected(self) -> asyncio.Event:
        if self._connected is None:
            self._connected = asyncio.Event()
        return self._connected

    # -- the Output interface --------------------------------------------------------------------
    async def start(self, storage: Storage) -> None:
        """Learn the meters' device facts and availability from the storage, then connect in
        the background (an unreachable broker is not an error: the outbox holds the readings).
        """
        if self._task is not None:
            return
        self._started_at = time.monotonic()
        await self._begin(storage)
        tls = await asyncio.to_thread(self.settings.tls_context)
        try:
            await asyncio.to_thread(self._load, storage)
        except Kamstrup382Error as exc:
            log.warning("mqtt: could not read the meters' last state from storage: %s", exc)
        self._run_in_background(self._run(tls), "k382-mqtt")

    async def publish(
        self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]
    ) -> None:
        """Note failures (availability) and wake the sender; the readings are in the outbox."""
        for failure in failures:
            self._meters.setdefault(failure.meter, DeviceFacts())
            if failure.kind == MISSED:
                continue  # the collector had no time for the meter: nothing is known about it
            last = self._failed_at.get(failure.meter)
            if last is None or failure.failed_at > last:
                self._failed_at[failure.meter] = failure.failed_at
                self._errors[failure.meter] = (failure.kind, failure.message)
            read = self._read_at.get(failure.meter)
            if read is None or failure.failed_at > read:
                self._available[failure.meter] = OFFLINE
        self._wake_up()

    def meters_changed(self, meters: Sequence[Any]) -> None:
        """A reloaded configuration (names or configured meters): every device is announced
        again at once, a meter added with its setup, one removed cleared as a ghost."""
        self._devices.reconfigure(MeterSetup.of(m) for m in meters)
        for meter in [m for m in self._available if m not in self._devices.setups]:
            del self._available[meter]
        self._announce_all = True
        self._wake_up()

    async def stop(self) -> None:
        """Publish what the outbox holds (for up to ``stop_timeout`` seconds), say ``offline``
        and disconnect. What is left stays in the outbox for the next start."""
        await self._stop_worker(
            self.settings.stop_timeout, grace=self.settings.timeout, finish=self._stopped
        )

    async def _stopped(self) -> None:
        """Disconnected: claims and announcement leases given back, state ``stopped``."""
        self.connected.clear()
        await self._release()  # a round cut short leaves no claims behind
        await self._release_announcements()
        await self._set_state(STOPPED)

    # -- health ----------------------------------------------------------------------------------
    def _client_id(self) -> str:
        return self.settings.client_id

    def _counters(self) -> Mapping[str, int]:
        return {
            "connect_attempts": self.connect_attempts,
            "connections": self.connections,
            "login_refusals": self.login_refusals,
            "published": self.published,
        }

    # -- state kept across connections -------------------------------------------------------------
    def _load(self, storage: Storage) -> None:
        for status in storage.status():
            if self._devices.configured and status.meter not in self._meters:
                continue
            self._meters.setdefault(status.meter, DeviceFacts())
            if status.last_error is not None and status.last_error_kind != MISSED:
                self._failed_at[status.meter] = status.last_error
                self._errors[status.meter] = (
                    status.last_error_kind or "",
                    status.last_error_message or "",
                )
            if status.last_success is not None:
                self._read_at[status.meter] = status.last_success
            if status.meter in self._failed_at or status.last_success is not None:
                ok = status.meter not in self._failed_at or (
                    status.last_success is not None
                    and status.last_success >= self._failed_at[status.meter]
                )
                self._available[status.meter] = ONLINE if ok else OFFLINE
        for meter in list(self._meters):
            latest = storage.latest(meter)
            if latest is not None:
                self._devices.update(meter, device_facts(latest))
                self._read_at[meter] = max(self._read_at.get(meter, latest.read_at), latest.read_at)

    # -- the connection --------------------------------------------------------------------------
    def _client(self, tls: ssl.SSLContext | None) -> aiomqtt.Client:
        s = self.settings
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id,
            protocol=s.protocol_version,
            will=aiomqtt.Will(self.topics.status, OFFLINE, qos=1, retain=True),
            keepalive=s.keepalive,
            timeout=s.timeout,
            tls_context=tls,
            tls_insecure=True if (tls is not None and s.insecure) else None,
            logger=log,
        )
        client.pending_calls_threshold = 3 * s.batch_size + 16
        return client

    async def _run(self, tls: ssl.SSLContext | None) -> None:
        s = self.settings
        delay = s.reconnect_delay
        refused_delay = s.login_retry
        assert self._wake is not None and self._stop_event is not None
        while not self._stopping:
            wait = delay
            try:
                self.connect_attempts += 1
                async with self._client(tls) as client:
                    self.connections += 1
                    delay, refused_delay = s.reconnect_delay, s.login_retry
                    log.info("mqtt: connected to %s", s.url)
                    await self._set_state(CONNECTED)
                    await self._session(client)
                return  # stopping, outbox flushed, offline said, disconnected
            except (aiomqtt.MqttError, _Disconnected, OSError) as exc:
                self.connected.clear()
                error = str(exc) or type(exc).__name__
                if login_refused(exc):
                    self.login_refusals += 1
                    wait, refused_delay = refused_delay, min(refused_delay * 2, s.login_retry_max)
                    log.error(
                        "mqtt: broker %s refused the login of %s (%s); readings wait in the "
                        "outbox; next try in %.0f s",
                        s.url,
                        "anonymous" if s.username is None else repr(s.username),
                        error,
                        wait,
                    )
                    await self._set_state(LOGIN_REFUSED, error, wait)
                else:
                    delay = min(delay * 2, s.reconnect_max)
                    log.warning(
                        "mqtt: broker %s unreachable (%s); readings wait in the outbox",
                        s.url,
                        error,
                    )
                    await self._set_state(UNREACHABLE, error, wait)
            except Exception as exc:  # a bug: say so, and keep the publisher alive
                self.connected.clear()
                log.exception("mqtt: publisher failed; reconnecting")
                await self._set_state(UNREACHABLE, f"{type(exc).__name__}: {exc}", wait)
            if self._stopping:
                return
            if self.state == LOGIN_REFUSED:
                # the same credentials would be refused again: only stopping cuts this short
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), wait)
                continue
            # wait before reconnecting; a new batch to publish cuts the wait short
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _session(self, client: aiomqtt.Client) -> None:
        self.connected.set()
        await self._send(client, self.topics.status, ONLINE, qos=1, retain=True)
        if self.settings.discovery:
            try:
                await client.subscribe(self.topics.ha_status, qos=1)
            except aiomqtt.MqttError as exc:
                raise _Disconnected(
                    f"subscribing to {self.topics.ha_status} failed: {exc}"
                ) from exc
        # retained availability may be gone (a broker without persistence): say it again
        self._available_sent.clear()
        self._readout_sent.clear()
        self._announce_all = True
        listener = asyncio.create_task(self._listen(client))
        sender = asyncio.create_task(self._sender(client))
        try:
            done, _ = await asyncio.wait({listener, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listener, sender):
                task.cancel()
            await asyncio.gather(listener, sender, return_exceptions=True)
            self.connected.clear()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise _Disconnected(str(task.exception())) from task.exception()
        # graceful stop: the last will is not sent on a clean disconnect, so say it ourselves
        await self._send(client, self.topics.status, OFFLINE, qos=1, retain=True)

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Home Assistant's status topic: ``online`` (HA started) -> announce everything."""
        assert self._wake is not None
        async for message in client.messages:
            if message.topic.matches(self.topics.ha_status) and message.payload in (
                ONLINE,
                ONLINE.encode(),
            ):
                log.info("mqtt: Home Assistant is online; announcing %d meters", len(self._meters))
                self._announce_all = True
                self._wake.set()
        raise _Disconnected("message stream ended")

    async def _sender(self, client: aiomqtt.Client) -> None:
        """Announce, then publish the outbox in order; sleep until woken; repeat."""
        assert self._wake is not None and self._storage is not None
        storage = self._storage
        while not self._abandon:
            self._wake.clear()
            await self._send_announcements(client)
            await self._send_availability(client)
            try:
                items = await asyncio.to_thread(
                    storage.outbox_pending,
                    self.settings.batch_size,
                    holder=self.settings.client_id,
                    lease=timedelta(seconds=self.settings.outbox_lease),
                )
            except Kamstrup382Error as exc:
                log.warning("mqtt: reading the outbox failed (%s); trying again", exc)
                await asyncio.sleep(self.settings.reconnect_delay)
                continue
            if items:
                try:
                    await self._send_items(client, items)
                except BaseException:
                    await self._release()
                    raise
                continue
            if self._stopping:
                return
            # woken by a new batch; or look again anyway: another collector sharing the outbox
            # may have stored readings, or died holding some
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.outbox_lease / 2)

    async def _publish_many(self, client: aiomqtt.Client, messages: Sequence[_Message]) -> int:
        """Publish ``messages`` in order, pipelined ``batch_size`` at a time; return how many
        from the start were acknowledged before the first failure (all: ``len(messages)``)."""
        chunk = self.settings.batch_size
        for start in range(0, len(messages), chunk):
            part = messages[start : start + chunk]
            results = await asyncio.gather(
                *(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in part),
                return_exceptions=True,
            )
            for offset, result in enumerate(results):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result  # cancellation
                    self.last_error = str(result) or type(result).__name__
                    return start + offset
        return len(messages)

    async def _send_items(self, client: aiomqtt.Client, items: list[OutboxItem]) -> None:
        """Publish outbox entries (with any discovery update they bring) and remove the ones
        the broker acknowledged; stop at the first failure so that the order is kept."""
        assert self._storage is not None
        s = self.settings
        changed: dict[str, DeviceFacts] = {}
        for _, record in items:
            facts = device_facts(record)
            if self._announced.get(record.meter) != facts:
                changed[record.meter] = facts
        if changed and any(self._devices.unknown(meter) for meter in changed):
            self._upkeep_at = 0.0  # a meter known at last: ghosts may be cleared now
        for meter, facts in changed.items():  # the newest reading's facts
            self._devices.update(meter, facts)
        # a meter read for the first time, or whose facts changed: its device before its state
        messages: list[_Message] = []
        if changed and s.discovery:
            messages += await self._announce(self._devices.plan(changed))
        for meter, facts in changed.items():
            self._announced[meter] = facts
        ends: list[tuple[int, int]] = []  # (outbox id, index of its state message)
        for outbox_id, record in items:
            meter = record.meter
            ends.append((outbox_id, len(messages)))
            messages.append(_Message(self.topics.state(meter), state_json(record), s.qos, s.retain))
            if meter not in self._read_at or record.read_at >= self._read_at[meter]:
                self._read_at[meter] = record.read_at
                failed = self._failed_at.get(meter)
                if failed is None or record.read_at >= failed:
                    self._available[meter] = ONLINE
        sent = await self._publish_many(client, messages)
        done = [outbox_id for outbox_id, index in ends if index < sent]
        # remove what was acknowledged and give the meters back, in one transaction
        await asyncio.to_thread(self._storage.outbox_done, done, holder=self.settings.client_id)
        self.published += len(done)
        if sent < len(messages):
            for _, record in items[len(done) :]:
                self._announced.pop(record.meter, None)  # announce again with it
            raise _Disconnected(f"publishing failed: {self.last_error}")

    async def _send(
        self, client: aiomqtt.Client, topic: str, payload: str, *, qos: int, retain: bool
    ) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise _Disconnected(f"publishing to {topic} failed: {exc}") from exc
