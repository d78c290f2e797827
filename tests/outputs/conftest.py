"""The fixtures the outputs' tests share: a SQLite storage, a Prometheus exporter serving
``/metrics`` on loopback, and an MQTT watcher on the test broker.

A test module that needs another storage (another path, another backend) defines its own
``storage``: pytest takes the module's fixture over this one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kamstrup382.outputs.prometheus import PrometheusOutput
from kamstrup382.storage import Storage
from kamstrup382.storage.url import open_storage
from tests.fixtures.mosquitto import MosquittoBroker

from .helpers import ALL, Watcher

#: The meters the exporter of :func:`output` is configured with: two 685-382s read over mode A
#: (``house``, ``garage``) and a 382Jx3 read over KMP (``flat``).
EXPORTED_METERS = ("house", "garage", "flat")


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    """A SQLite database of its own, ``readings.sqlite`` in the test's directory."""
    with open_storage(f"sqlite:///{tmp_path / 'readings.sqlite'}") as store:
        yield store


@pytest.fixture
async def output(storage: Storage) -> AsyncIterator[PrometheusOutput]:
    """A started Prometheus exporter on a free loopback port, configured with
    :data:`EXPORTED_METERS`."""
    exporter = PrometheusOutput.from_config({"listen": "127.0.0.1:0"}, list(EXPORTED_METERS))
    await exporter.start(storage)
    try:
        yield exporter
    finally:
        await exporter.stop()


@pytest.fixture
async def watcher(mosquitto: MosquittoBroker) -> AsyncIterator[Watcher]:
    """Records every message under :data:`~tests.outputs.helpers.ALL` on the test broker."""
    async with Watcher(mosquitto.host, mosquitto.port, ALL) as w:
        yield w
