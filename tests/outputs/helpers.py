"""Helpers of the output tests: readings as a meter gives them, and an MQTT watcher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

import aiomqtt

from kamstrup382.outputs.discovery import MeterSetup
from kamstrup382.outputs.mqtt import MqttOutput
from kamstrup382.protocol import (
    BccAlgorithm,
    Identification,
    MeterValues,
    encode_reply,
    parse_type_number,
)
from kamstrup382.storage import FailureRecord, KmpReadingRecord, ReadingRecord
from tests.fixtures.mosquitto import MosquittoBroker

__all__ = [
    "ALL",
    "PATIENCE",
    "START",
    "STEP",
    "Gate",
    "Received",
    "Watcher",
    "failure",
    "kmp_reading",
    "make_output",
    "reading",
    "settle",
]

#: The topics an MQTT test watches: the states, Home Assistant's discovery, a test prefix.
ALL = ["kamstrup382/#", "homeassistant/#", "k382-test/#"]

START = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
#: A guard against a hung test, not a speed requirement.
PATIENCE = 60.0


def reading(
    meter: str = "house",
    index: int = 0,
    *,
    type_number: str = "685-382-OK-15",
    customer_number: str = "00054042",
    energy: int | None = None,
) -> ReadingRecord:
    """The ``index``-th quarter-hour reading of ``meter``, with a real telegram as ``raw``."""
    t1 = 33 + 2 * index
    t2 = 20 + index
    values = MeterValues(
        customer_number=customer_number,
        energy=Decimal(t1 + t2 if energy is None else energy),
        tariff_1=Decimal(t1),
        tariff_2=Decimal(t2),
        hour_counter=Decimal(482 + index // 4),
        pulse_input=Decimal(7 * index),
        actual_peak=Decimal("18.3") + Decimal(index % 10) / 10,
        last_month_peak=Decimal("17.0"),
    )
    identification = Identification.for_type_number(parse_type_number(type_number))
    raw = encode_reply(identification, values, bcc=BccAlgorithm.SUM7)
    slot = START + index * STEP
    return ReadingRecord(
        meter=meter,
        slot=slot,
        read_at=slot + timedelta(seconds=2, milliseconds=index % 1000),
        values=values,
        identification=str(identification).removeprefix("/"),
        type_number=type_number,
        bcc_algorithm="sum7",
        raw=raw,
        answer_delay=0.05,
        duration=6.5 + index / 100,
        attempts=1,
    )


def kmp_reading(
    meter: str = "flat",
    index: int = 0,
    *,
    serial: int = 54042,
    meter_type: int = 0x0382,
    software_revision: str = "A1",
    leave_out: tuple[str, ...] = (),
) -> KmpReadingRecord:
    """The ``index``-th quarter-hour KMP reading of ``meter``: a 382Jx3 drawing 2,400 W (plus
    10 W per index) split 50/30/20 % over its phases, as the emulator's meter answers; the
    registers in ``leave_out`` not sent."""
    power = 2400 + 10 * index
    parts = [power * 5 // 10, power * 3 // 10]
    parts.append(power - sum(parts))
    voltages = [230 - (part * 4 + 5000) // 10000 for part in parts]  # 0.4 V per kW, rounded
    values: dict[str, Decimal] = {
        "energy": Decimal(1234 + index),
        "energy_out": Decimal(0),
        "energy_hires": Decimal(1234 + index) + Decimal("0.56"),
        "energy_out_hires": Decimal("0.00"),
        "power": Decimal(power),
        "power_out": Decimal(0),
        "max_power": Decimal(5100),
    }
    for n, (part, volts) in enumerate(zip(parts, voltages, strict=True), start=1):
        values[f"voltage_l{n}"] = Decimal(volts)
        values[f"current_l{n}"] = (Decimal(part) / volts).quantize(Decimal("0.01"))
        values[f"power_l{n}"] = Decimal(part)
    slot = START + index * STEP
    return KmpReadingRecord(
        meter=meter,
        slot=slot,
        read_at=slot + timedelta(seconds=1, milliseconds=index % 1000),
        meter_type=meter_type,
        software_revision=software_revision,
        serial=serial,
        values={k: v for k, v in values.items() if k not in leave_out},
        duration=0.21 + index / 1000,
        exchanges=3,
        attempts=3,
    )


def failure(meter: str = "house", index: int = 0, kind: str = "timeout") -> FailureRecord:
    slot = START + index * STEP
    return FailureRecord(
        meter=meter,
        slot=slot,
        failed_at=slot + timedelta(seconds=3),
        kind=kind,
        message="no answer (phase answer, 0 bytes received)",
        attempts=3,
        duration=1.9,
    )


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """An MQTT client that records every message on ``topics``, for assertions.

    It reconnects when the broker comes back and subscribes again (a clean session), so the
    broker then sends the retained messages once more, flagged ``retain``; messages routed
    to an existing subscription arrive with ``retain`` off. ``subscribed`` counts the
    subscriptions made.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str],
        *,
        client_id: str = "k382-test-watcher",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.topics = topics
        self.client_id = client_id
        self.messages: list[Received] = []
        self.subscribed = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await self.wait_subscribed(1)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    username=self.username,
                    password=self.password,
                    timeout=5,
                ) as client:
                    self._client = client
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    async with self._changed:
                        self.subscribed += 1
                        self._changed.notify_all()
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        async with self._changed:
                            self.messages.append(
                                Received(str(message.topic), data, message.retain, message.qos)
                            )
                            self._changed.notify_all()
            except aiomqtt.MqttError:
                self._client = None
                await asyncio.sleep(0.05)

    async def wait_subscribed(self, count: int) -> None:
        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.subscribed >= count)

        await asyncio.wait_for(check(), PATIENCE)

    async def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, retain=retain)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, condition: Callable[[list[Received]], bool]) -> list[Received]:
        """Wait until ``condition(messages)`` holds; return the messages."""

        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: condition(self.messages))

        try:
            await asyncio.wait_for(check(), PATIENCE)
        except TimeoutError:
            topics = [m.topic for m in self.messages[-20:]]
            raise AssertionError(f"condition not met; last topics seen: {topics}") from None
        return list(self.messages)

    async def wait_count(self, topic: str, count: int) -> list[Received]:
        await self.wait_for(lambda ms: sum(m.topic == topic for m in ms) >= count)
        return self.on(topic)


async def settle(watcher: Watcher, marker_topic: str = "k382-test/marker") -> None:
    """Publish a marker through the broker and wait for it: everything sent before it by the
    same broker to the watcher has then been delivered (per-connection order)."""
    token = f"{id(watcher)}-{len(watcher.messages)}"
    await watcher.publish(marker_topic, token)
    await watcher.wait_for(lambda ms: any(m.topic == marker_topic and m.text == token for m in ms))


class Gate:
    """A TCP relay from a loopback port to the broker that the test opens and closes.

    The output connects through it. After a broker restart the test keeps it closed until the
    watcher has subscribed again, so that nothing the output sends can pass unseen. Closed, it
    does not listen: connecting is refused at once, as with a stopped broker.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening (relayed connections end with the broker's)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def __aenter__(self) -> Gate:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        tasks = {
            asyncio.create_task(pump(reader, up_writer)),
            asyncio.create_task(pump(up_reader, writer)),
        }
        self._tasks |= tasks
        try:
            await asyncio.gather(*tasks)
        finally:
            self._tasks -= tasks


def make_output(
    broker: MosquittoBroker | Gate, meters: Sequence[str | MeterSetup] = ("house",), **extra: Any
) -> MqttOutput:
    """An MQTT output to ``broker`` (the test broker, or a :class:`Gate` to it) for ``meters``,
    quick to reconnect; ``extra``: more keys of the ``[mqtt]`` table."""
    section: dict[str, Any] = {
        "url": broker.url,
        "client_id": "k382-test-collector",
        "reconnect_delay": 0.05,
        "reconnect_max": 0.2,
        "timeout": 5,
        **extra,
    }
    return MqttOutput.from_config(section, list(meters))
