"""MQTT output: each reading as JSON on ``<topic_prefix>/<meter>/state``, Home Assistant
discovery, availability with a last will, and a durable outbox so that outages lose nothing.

Configuration (the ``[mqtt]`` table; only ``url`` is required)::

    [mqtt]
    url = "mqtt://broker.local"        # mqtt://HOST[:1883] or mqtts://HOST[:8883] (TLS)
    topic_prefix = "kamstrup382"       # state and availability topics
    discovery_prefix = "homeassistant" # Home Assistant discovery topics
    discovery = true                   # false: no discovery configs, no HA status subscription
    qos = 1                            # 0, 1 or 2 for state messages (1: at least once)
    retain = true                      # retain state messages (HA shows the last value at once)
    username = "k382"
    password = "..."                   # or the environment: K382_MQTT_PASSWORD
    client_id = "kamstrup382-host"     # default: kamstrup382-<hostname>-<pid>
    protocol = "3.1.1"                 # or "5"
    ca_file = "/etc/ssl/my-ca.pem"     # mqtts: the CA to trust (default: the system's)
    certfile = "client.pem"            # mqtts: a client certificate (with keyfile)
    keyfile = "client.key"
    insecure = false                   # mqtts: accept any certificate and host name (testing!)
    keepalive = 60                     # seconds
    timeout = 10                       # seconds for one broker operation
    reconnect_delay = 1                # first wait before reconnecting; doubles up to
    reconnect_max = 60                 # this many seconds
    batch_size = 100                   # outbox entries published per round
    stop_timeout = 5                   # seconds to flush the outbox on shutdown
    outbox_lease = 60                  # seconds a claim on meters of a shared outbox lasts

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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from kamstrup382.errors import ConfigError, Kamstrup382Error
from kamstrup382.outputs import settings as check
from kamstrup382.outputs.base import Output
from kamstrup382.outputs.discovery import (
    OFFLINE,
    ONLINE,
    DeviceFacts,
    Topics,
    check_topic_prefix,
    device_facts,
    discovery_configs,
    state_json,
)
from kamstrup382.storage import MISSED, FailureRecord, OutboxItem, ReadingRecord, Storage

__all__ = ["MqttOutput", "MqttSettings"]

log = logging.getLogger(__name__)

_KEYS = (
    "url",
    "topic_prefix",
    "discovery_prefix",
    "discovery",
    "qos",
    "retain",
    "username",
    "password",
    "client_id",
    "protocol",
    "ca_file",
    "certfile",
    "keyfile",
    "insecure",
    "keepalive",
    "timeout",
    "reconnect_delay",
    "reconnect_max",
    "batch_size",
    "stop_timeout",
    "outbox_lease",
)
_PROTOCOLS = {
    "3.1.1": aiomqtt.ProtocolVersion.V311,
    "311": aiomqtt.ProtocolVersion.V311,
    "5": aiomqtt.ProtocolVersion.V5,
    "5.0": aiomqtt.ProtocolVersion.V5,
}
_SCHEMES = {"mqtt": (False, 1883), "tcp": (False, 1883), "mqtts": (True, 8883), "ssl": (True, 8883)}


def _default_client_id() -> str:
    return f"kamstrup382-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """A checked ``[mqtt]`` table."""

    host: str
    port: int = 1883
    tls: bool = False
    topic_prefix: str = "kamstrup382"
    discovery_prefix: str = "homeassistant"
    discovery: bool = True
    qos: int = 1
    retain: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = field(default_factory=_default_client_id)
    protocol: str = "3.1.1"
    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False
    keepalive: int = 60
    timeout: float = 10.0
    reconnect_delay: float = 1.0
    reconnect_max: float = 60.0
    batch_size: int = 100
    stop_timeout: float = 5.0
    outbox_lease: float = 60.0

    @classmethod
    def parse(cls, section: Mapping[str, Any]) -> MqttSettings:
        """Check the ``[mqtt]`` table; :class:`ConfigError` names the first bad key."""
        data = check.table(section, "mqtt")
        check.check_keys(data, _KEYS, "mqtt")
        if "url" not in data:
            raise ConfigError("mqtt.url", "missing (e.g. mqtt://localhost:1883)")
        host, port, tls = _parse_url(data["url"])
        values: dict[str, Any] = {"host": host, "port": port, "tls": tls}
        for key in ("topic_prefix", "discovery_prefix"):
            if key in data:
                prefix = check.text(data[key], f"mqtt.{key}")
                problem = check_topic_prefix(prefix)
                if problem:
                    raise ConfigError(f"mqtt.{key}", f"{prefix!r} {problem}")
                values[key] = prefix
        for key in ("discovery", "retain", "insecure"):
            if key in data:
                values[key] = check.boolean(data[key], f"mqtt.{key}")
        if "qos" in data:
            values["qos"] = check.integer(data["qos"], "mqtt.qos", low=0, high=2)
        for key in ("username", "client_id"):
            if key in data:
                values[key] = check.text(data[key], f"mqtt.{key}")
        if "password" in data:
            values["password"] = check.text(data["password"], "mqtt.password", empty=True)
            if "username" not in values:
                raise ConfigError("mqtt.username", "missing: a password needs a username")
        if "protocol" in data:
            text = str(data["protocol"]).strip().lower().removeprefix("v")
            if text not in _PROTOCOLS:
                raise ConfigError(
                    "mqtt.protocol", f'expected "3.1.1" or "5", got {data["protocol"]!r}'
                )
            values["protocol"] = "5" if _PROTOCOLS[text] is aiomqtt.ProtocolVersion.V5 else "3.1.1"
        for key in ("ca_file", "certfile", "keyfile"):
            if key in data:
                path = check.text(data[key], f"mqtt.{key}")
                if not Path(path).expanduser().is_file():
                    raise ConfigError(f"mqtt.{key}", f"no such file: {path}")
                if not tls:
                    raise ConfigError(f"mqtt.{key}", "only used with an mqtts:// url")
                values[key] = str(Path(path).expanduser())
        if "insecure" in values and values["insecure"] and not tls:
            raise ConfigError("mqtt.insecure", "only used with an mqtts:// url")
        if ("keyfile" in values) and ("certfile" not in values):
            raise ConfigError("mqtt.certfile", "missing: a keyfile needs its certfile")
        if "keepalive" in data:
            values["keepalive"] = check.integer(
                data["keepalive"], "mqtt.keepalive", low=1, high=65535
            )
        for key in ("timeout", "reconnect_delay", "reconnect_max", "stop_timeout", "outbox_lease"):
            if key in data:
                values[key] = check.seconds(data[key], f"mqtt.{key}")
        if "batch_size" in data:
            values["batch_size"] = check.integer(
                data["batch_size"], "mqtt.batch_size", low=1, high=10_000
            )
        settings = cls(**values)
        if settings.reconnect_max < settings.reconnect_delay:
            raise ConfigError("mqtt.reconnect_max", "must not be less than mqtt.reconnect_delay")
        if settings.outbox_lease < 2 * settings.timeout:
            # a round publishes for up to about one timeout: the claim must outlast it
            raise ConfigError(
                "mqtt.outbox_lease",
                f"must be at least twice mqtt.timeout ({2 * settings.timeout:g} s), "
                f"got {settings.outbox_lease:g} s",
            )
        return settings

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix, self.discovery_prefix)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``mqtts://`` (``None`` for plain ``mqtt://``)."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.certfile is not None:
                context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            key = (
                "mqtt.certfile" if self.certfile and "cert" in str(exc).lower() else "mqtt.ca_file"
            )
            raise ConfigError(key, f"cannot load for TLS: {exc}") from exc
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _parse_url(value: object) -> tuple[str, int, bool]:
    url = check.text(value, "mqtt.url").strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError("mqtt.url", f"bad URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigError(
            "mqtt.url", f"bad scheme in {url!r}: use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "mqtt.url",
            "credentials belong in mqtt.username and mqtt.password (or K382_MQTT_PASSWORD)",
        )
    if not parts.hostname:
        raise ConfigError("mqtt.url", f"no host in {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("mqtt.url", f"unexpected path or query in {url!r}")
    tls, default_port = _SCHEMES[parts.scheme.lower()]
    if port == 0:
        raise ConfigError("mqtt.url", "port 0 is not a broker port")
    return parts.hostname, port if port is not None else default_port, tls


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: str
    qos: int
    retain: bool


class _Disconnected(Exception):
    """A broker operation failed: end this connection and reconnect."""


class MqttOutput(Output):
    """Publishes stored readings to an MQTT broker, from the durable outbox, in order.

    Attributes for monitoring: ``connected`` (an event, set while a session with the broker
    is up), ``connections`` (sessions opened), ``published`` (state messages acknowledged),
    ``last_error`` (text of the last broker problem).
    """

    name = "mqtt"
    uses_outbox = True

    def __init__(self, settings: MqttSettings, meters: Sequence[str] = ()) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.connections = 0
        self.published = 0
        self.last_error: str | None = None
        self._meters: dict[str, DeviceFacts] = {name: DeviceFacts() for name in meters}
        self._announce_all = True
        # per meter: newest reading published, newest failure seen, availability wanted/sent
        self._read_at: dict[str, datetime] = {}
        self._failed_at: dict[str, datetime] = {}
        self._available: dict[str, str] = {}
        self._available_sent: dict[str, str] = {}
        self._storage: Storage | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._connected: asyncio.Event | None = None
        self._stopping = False
        self._abandon = False

    @classmethod
    def from_config(cls, section: Mapping[str, Any], meters: Sequence[Any] = ()) -> MqttOutput:
        names = [m if isinstance(m, str) else str(m.name) for m in meters]
        return cls(MqttSettings.parse(section), names)

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
        self._storage = storage
        self._wake = asyncio.Event()
        self._stopping = False
        self._abandon = False
        tls = await asyncio.to_thread(self.settings.tls_context)
        try:
            await asyncio.to_thread(self._load, storage)
        except Kamstrup382Error as exc:
            log.warning("mqtt: could not read the meters' last state from storage: %s", exc)
        self._task = asyncio.get_running_loop().create_task(self._run(tls), name="k382-mqtt")

    async def publish(
        self, readings: Sequence[ReadingRecord], failures: Sequence[FailureRecord]
    ) -> None:
        """Note failures (availability) and wake the sender; the readings are in the outbox."""
        for failure in failures:
            self._meters.setdefault(failure.meter, DeviceFacts())
            if failure.kind == MISSED:
                continue  # the collector had no time for the meter: nothing is known about it
            last = self._failed_at.get(failure.meter)
            if last is None or failure.failed_at > last:
                self._failed_at[failure.meter] = failure.failed_at
            read = self._read_at.get(failure.meter)
            if read is None or failure.failed_at > read:
                self._available[failure.meter] = OFFLINE
        if self._wake is not None:
            self._wake.set()

    async def stop(self) -> None:
        """Publish what the outbox holds (for up to ``stop_timeout`` seconds), say ``offline``
        and disconnect. What is left stays in the outbox for the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        try:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.settings.stop_timeout)
            except TimeoutError:
                log.warning(
                    "mqtt: outbox not flushed within %.1f s; the rest waits for the next start",
                    self.settings.stop_timeout,
                )
                # leave after the batch in flight, still saying offline and disconnecting
                self._abandon = True
                if self._wake is not None:
                    self._wake.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), self.settings.timeout)
        except Exception:
            log.exception("mqtt: publisher failed")
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.connected.clear()
            await self._release()  # a round cut short leaves no claims behind

    # -- state kept across connections -------------------------------------------------------------
    def _load(self, storage: Storage) -> None:
        for status in storage.status():
            if self._meters and status.meter not in self._meters:
                continue
            self._meters.setdefault(status.meter, DeviceFacts())
            if status.last_error is not None and status.last_error_kind != MISSED:
                self._failed_at[status.meter] = status.last_error
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
                self._meters[meter] = device_facts(latest)
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
            protocol=_PROTOCOLS[s.protocol],
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
        delay = self.settings.reconnect_delay
        assert self._wake is not None
        while not self._stopping:
            try:
                async with self._client(tls) as client:
                    self.connections += 1
                    delay = self.settings.reconnect_delay
                    log.info("mqtt: connected to %s", self.settings.url)
                    await self._session(client)
                return  # stopping, outbox flushed, offline said, disconnected
            except (aiomqtt.MqttError, _Disconnected, OSError) as exc:
                self.connected.clear()
                self.last_error = str(exc) or type(exc).__name__
                log.warning(
                    "mqtt: broker %s unreachable (%s); readings wait in the outbox",
                    self.settings.url,
                    self.last_error,
                )
            except Exception as exc:  # a bug: say so, and keep the publisher alive
                self.connected.clear()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("mqtt: publisher failed; reconnecting")
            if self._stopping:
                return
            # wait before reconnecting; a new batch to publish cuts the wait short
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(delay * 2, self.settings.reconnect_max)

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
        messages: list[_Message] = []
        ends: list[tuple[int, int]] = []  # (outbox id, index of its state message)
        for outbox_id, record in items:
            meter = record.meter
            facts = device_facts(record)
            if self._meters.get(meter) != facts:
                self._meters[meter] = facts
                if s.discovery:
                    messages += [
                        _Message(topic, _json(config), 1, True)
                        for topic, config in discovery_configs(meter, facts, self.topics)
                    ]
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
                self._meters[record.meter] = DeviceFacts()  # announce again with it
            raise _Disconnected(f"publishing failed: {self.last_error}")

    async def _release(self) -> None:
        """Give back this output's claims on the outbox (best effort: else they expire)."""
        if self._storage is None:
            return
        try:
            await asyncio.to_thread(self._storage.outbox_release, self.settings.client_id)
        except Kamstrup382Error as exc:
            log.warning("mqtt: giving back outbox claims failed (they expire): %s", exc)

    async def _send_announcements(self, client: aiomqtt.Client) -> None:
        """Every meter's discovery configs, when Home Assistant (re)started or at first."""
        if not (self._announce_all and self.settings.discovery):
            return
        self._announce_all = False
        messages = [
            _Message(topic, _json(config), 1, True)
            for meter, facts in list(self._meters.items())
            for topic, config in discovery_configs(meter, facts, self.topics)
        ]
        try:
            sent = await self._publish_many(client, messages)
        except BaseException:
            self._announce_all = True
            raise
        if sent < len(messages):
            self._announce_all = True
            raise _Disconnected(f"announcing failed: {self.last_error}")

    async def _send_availability(self, client: aiomqtt.Client) -> None:
        changes = [
            (meter, payload)
            for meter, payload in self._available.items()
            if self._available_sent.get(meter) != payload
        ]
        messages = [
            _Message(self.topics.availability(meter), payload, 1, True)
            for meter, payload in changes
        ]
        sent = await self._publish_many(client, messages)
        for meter, payload in changes[:sent]:
            self._available_sent[meter] = payload
        if sent < len(messages):
            raise _Disconnected(f"publishing availability failed: {self.last_error}")

    async def _send(
        self, client: aiomqtt.Client, topic: str, payload: str, *, qos: int, retain: bool
    ) -> None:
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise _Disconnected(f"publishing to {topic} failed: {exc}") from exc


def _json(config: Mapping[str, Any]) -> str:
    return json.dumps(config, separators=(",", ":"))
