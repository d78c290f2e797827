"""InfluxDB output: each stored reading as a point at its own time, from the durable outbox.

Readings of both protocols (mode A and KMP) take the same path, in one queue and one batch;
what differs is only the point each becomes (:func:`~kamstrup382.outputs.influxdb_series.
reading_point`).

The ``[influxdb]`` table is described and checked in
:mod:`kamstrup382.outputs.influxdb_settings`; the series (measurement, tags, fields, time) in
:mod:`kamstrup382.outputs.influxdb_series`; the line protocol in
:mod:`kamstrup382.outputs.influxdb_line`.

How nothing is lost and nothing doubled: the collector stores each new reading and queues it in
this output's own queue of the outbox in one transaction (``uses_outbox``, queue ``influxdb``:
MQTT has its own, and neither waits for the other). This output claims whole meters of its
queue (``Storage.outbox_pending(holder=client_id, output="influxdb")``), writes their oldest
entries in order, ``batch_size`` points per ``POST /write``, and removes an entry only after
InfluxDB answered 2xx. A write whose answer is lost is written again; the point has the same
measurement, tags and time, so InfluxDB keeps one point.

What InfluxDB answers:

- 2xx: written.
- 400, 413 and 422 (the data or the request's size is refused): the batch is split in halves
  and each written again, down to single points; a single point refused is logged as an error
  with InfluxDB's message, counted (``rejected``), and taken out of the queue so that it does
  not block its meter forever. The reading itself stays in the storage (``k382 export``).
- 401 and 403: the credentials are refused: the state is ``login_refused``, the next try waits
  ``login_retry`` (doubling up to ``login_retry_max``); nothing leaves the queue.
- anything else (404 database not found, 429, 5xx, no connection, a timeout): the state is
  ``unreachable``, the next try waits ``retry_delay`` (doubling up to ``retry_max``); nothing
  leaves the queue.

The HTTP client is httpx (the ``influxdb`` extra): asynchronous, so the writes run on the
collector's event loop without a thread, with connection reuse, timeouts and TLS
verification against the system's or a given CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import httpx

from kamstrup382.errors import Kamstrup382Error
from kamstrup382.outputs.base import Output
from kamstrup382.outputs.health import (
    CONNECTED,
    LOGIN_REFUSED,
    STARTING,
    STATES,
    STOPPED,
    UNREACHABLE,
)
from kamstrup382.outputs.influxdb_line import encode_point
from kamstrup382.outputs.influxdb_series import reading_point
from kamstrup382.outputs.influxdb_settings import InfluxSettings
from kamstrup382.outputs.outbox_worker import OutboxWorker, WorkerLog
from kamstrup382.storage import AnyReading, FailureRecord, Storage

__all__ = ["STATES", "InfluxOutput", "InfluxSettings"]

log = logging.getLogger(__name__)

#: Answers that refuse the data (or the request's size), not the server's state.
_REFUSED_DATA = frozenset({400, 413, 422})
_REFUSED_LOGIN = frozenset({401, 403})
#: How much of an error answer is kept for the log.
_MAX_MESSAGE = 500


class _WriteFailed(Kamstrup382Error):
    """A write failed in a way that a later try may not (the entries stay queued)."""

    def __init__(self, message: str, *, login: bool = False) -> None:
        super().__init__(message)
        self.login = login


class InfluxOutput(OutboxWorker, Output):
    """Writes stored readings to InfluxDB, from its queue of the durable outbox, in order.

    Attributes for monitoring: ``state`` (one of :data:`STATES`), ``written`` (points InfluxDB
    accepted), ``rejected`` (readings it refused as data, logged), ``requests``, ``failures``
    (writes that failed and wait to be tried again), ``login_refusals``, ``last_error``; all of
    them at once in :meth:`health`.
    """

    name = "influxdb"
    uses_outbox = True
    worker_log = WorkerLog(log, queue="queue", worker="writer", unflushed="queue not written")

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.written = 0
        self.rejected = 0
        self.requests = 0
        self.failures = 0
        self.login_refusals = 0
        self._keep_worker(settings.state_file)
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any], meters: Sequence[Any] = ()) -> InfluxOutput:
        return cls(InfluxSettings.parse(section))

    # -- the Output interface --------------------------------------------------------------------
    async def start(self, storage: Storage) -> None:
        """Start writing the queue in the background (an unreachable InfluxDB is not an error:
        the queue holds the readings)."""
        if self._task is not None:
            return
        await self._begin(storage)
        verify: ssl.SSLContext | bool = await asyncio.to_thread(self.settings.tls_context)
        self._client = httpx.AsyncClient(
            verify=verify, timeout=httpx.Timeout(self.settings.timeout), trust_env=False
        )
        self._run_in_background(self._run(), "k382-influxdb")

    async def publish(
        self, readings: Sequence[AnyReading], failures: Sequence[FailureRecord]
    ) -> None:
        """Wake the writer: the readings are in the queue already."""
        if self._wake is not None and readings:
            self._wake.set()

    async def stop(self) -> None:
        """Write what the queue holds (for up to ``stop_timeout`` seconds); what is left stays
        queued for the next start."""
        await self._stop_worker(self.settings.stop_timeout, finish=self._stopped)

    async def _stopped(self) -> None:
        """Claims given back, the HTTP client closed, state ``stopped``."""
        await self._release()  # a round cut short leaves no claims behind
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await self._set_state(STOPPED)

    # -- health ----------------------------------------------------------------------------------
    def _client_id(self) -> str:
        return self.settings.client_id

    def _counters(self) -> Mapping[str, int]:
        return {
            "written": self.written,
            "rejected": self.rejected,
            "requests": self.requests,
            "failures": self.failures,
            "login_refusals": self.login_refusals,
        }

    # -- the writer ------------------------------------------------------------------------------
    async def _run(self) -> None:
        """Write the queue in order; sleep until woken; after a failure, wait and try again."""
        s = self.settings
        assert self._wake is not None and self._stop_event is not None
        delay, login_delay = s.retry_delay, s.login_retry
        while True:
            self._wake.clear()
            try:
                wrote = await self._round()
            except _WriteFailed as exc:
                self.failures += 1
                if self._stopping:
                    return
                if exc.login:
                    self.login_refusals += 1
                    wait, login_delay = login_delay, min(login_delay * 2, s.login_retry_max)
                    log.error(
                        "influxdb: %s refused the credentials (%s); readings wait in the "
                        "queue; next try in %.0f s",
                        s.url,
                        exc,
                        wait,
                    )
                    await self._set_state(LOGIN_REFUSED, str(exc), wait)
                else:
                    wait, delay = delay, min(delay * 2, s.retry_max)
                    log.warning(
                        "influxdb: writing to %s failed (%s); readings wait in the queue; "
                        "next try in %.1f s",
                        s.url,
                        exc,
                        wait,
                    )
                    await self._set_state(UNREACHABLE, str(exc), wait)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), wait)
                continue
            except Exception as exc:  # the storage (or a bug): the entries stay queued
                if isinstance(exc, Kamstrup382Error):
                    log.warning("influxdb: reading the queue failed (%s); trying again", exc)
                else:
                    log.exception("influxdb: writer failed; trying again")
                if self._stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), s.retry_delay)
                continue
            if wrote:
                delay, login_delay = s.retry_delay, s.login_retry
                if self.state != CONNECTED:
                    await self._set_state(CONNECTED)
                continue
            if self._stopping:
                return
            if self.state in (STARTING, UNREACHABLE):  # nothing to write: does it answer?
                await self._ping()
            # woken by a new batch; or look again anyway: another collector sharing the queue
            # may have stored readings, or died holding some
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), s.outbox_lease / 2)

    async def _round(self) -> bool:
        """Claim and write one batch of the queue; whether there was one."""
        assert self._storage is not None
        s = self.settings
        # claimed and encoded in a worker thread: thousands of points are no work for the loop
        entries = await asyncio.to_thread(self._claim)
        if not entries:
            return False
        done: list[int] = []
        lines: list[tuple[int, AnyReading, str]] = []
        for outbox_id, record, line in entries:
            if isinstance(line, ValueError):  # nothing InfluxDB could take: say so, go on
                self._reject(record, f"cannot be written as line protocol: {line}")
                done.append(outbox_id)
            else:
                lines.append((outbox_id, record, line))
        try:
            await self._write_lines(lines, done)
        except BaseException:
            # remove what was written, give the meters back; the rest is tried again
            with contextlib.suppress(Kamstrup382Error):
                await asyncio.to_thread(
                    self._storage.outbox_done, done, holder=s.client_id, output=self.name
                )
            raise
        await asyncio.to_thread(
            self._storage.outbox_done, done, holder=s.client_id, output=self.name
        )
        return True

    def _claim(self) -> list[tuple[int, AnyReading, str | ValueError]]:
        """The next batch of the queue, claimed, each entry with its line (or why it has none)."""
        assert self._storage is not None
        s = self.settings
        items = self._storage.outbox_pending(
            s.batch_size,
            holder=s.client_id,
            lease=timedelta(seconds=s.outbox_lease),
            output=self.name,
        )
        entries: list[tuple[int, AnyReading, str | ValueError]] = []
        for outbox_id, record in items:
            try:
                line: str | ValueError = self._line(record)
            except ValueError as exc:
                line = exc
            entries.append((outbox_id, record, line))
        return entries

    async def _write_lines(
        self, lines: Sequence[tuple[int, AnyReading, str]], done: list[int]
    ) -> None:
        if not lines:
            return
        status, message = await self._post("".join(line + "\n" for _, _, line in lines))
        if 200 <= status < 300:
            self.written += len(lines)
            done.extend(outbox_id for outbox_id, _, _ in lines)
            return
        if status in _REFUSED_DATA:
            if len(lines) == 1:
                _, record, _ = lines[0]
                self._reject(record, f"refused by InfluxDB (HTTP {status}): {message}")
                done.append(lines[0][0])
                return
            half = len(lines) // 2
            await self._write_lines(lines[:half], done)
            await self._write_lines(lines[half:], done)
            return
        raise _WriteFailed(f"HTTP {status}: {message}", login=status in _REFUSED_LOGIN)

    async def _post(self, body: str) -> tuple[int, str]:
        """POST ``body`` to ``/write``: the status and InfluxDB's message (for an error)."""
        assert self._client is not None
        s = self.settings
        self.requests += 1
        try:
            response = await self._client.post(
                s.write_url, content=body.encode("utf-8"), headers=s.headers()
            )
        except httpx.HTTPError as exc:
            raise _WriteFailed(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)) from exc
        if 200 <= response.status_code < 300:
            return response.status_code, ""
        return response.status_code, _message(response)

    async def _ping(self) -> None:
        """``GET /ping``: the state says whether InfluxDB answers (before the first write)."""
        assert self._client is not None
        try:
            response = await self._client.get(f"{self.settings.url}/ping")
        except httpx.HTTPError as exc:
            await self._set_state(UNREACHABLE, f"{type(exc).__name__}: {exc}")
            return
        if 200 <= response.status_code < 300:
            await self._set_state(CONNECTED)
        else:
            await self._set_state(UNREACHABLE, f"HTTP {response.status_code}: {_message(response)}")

    def _line(self, record: AnyReading) -> str:
        s = self.settings
        point = reading_point(record, measurement=s.measurement, precision=s.precision, tags=s.tags)
        return encode_point(point)

    def _reject(self, record: AnyReading, why: str) -> None:
        self.rejected += 1
        log.error(
            "influxdb: the reading of %s for slot %s (read at %s) %s; it stays in the storage "
            "but is not written to InfluxDB",
            record.meter,
            record.slot.isoformat(),
            record.read_at.isoformat(),
            why,
        )


def _message(response: httpx.Response) -> str:
    """InfluxDB's error text: the JSON ``error`` (1.x) or ``message`` (2.x), else the body."""
    text = response.text.strip()
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict):
            for key in ("error", "message"):
                if isinstance(data.get(key), str):
                    text = data[key]
                    break
    return (text or response.reason_phrase)[:_MAX_MESSAGE]
