"""An ``auto`` meter whose port stops answering in the protocol found for it (another meter put
there: a mode A head replaced by a KMP meter) is detected again after
:data:`~kamstrup382.collector.protocols.SILENT_READOUTS` silent readouts in a row, through the
real collector: the finding is dropped from the storage too, then the new one kept."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kamstrup382.clock import ManualClock
from kamstrup382.collector import Collector
from kamstrup382.collector.protocols import SILENT_READOUTS
from kamstrup382.emulator.kmp_server import KmpEmulatorThread
from kamstrup382.errors import ConnectionLost, ReadTimeout
from kamstrup382.storage import FailureRecord, KmpReadingRecord, ReadingRecord
from kamstrup382.storage.url import open_storage
from tests.collector.conftest import make_config
from tests.collector.peer import ScriptedMeter

T0 = datetime(2026, 3, 1, 10, 7, 31, tzinfo=UTC)


async def test_a_meter_silent_in_its_protocol_is_detected_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    clock = ManualClock(T0)
    async with ScriptedMeter("answer") as head:  # mode A, on a port of its own
        port = head.port
        config = make_config(url, [port], meter_extra={0: 'protocol = "auto"'}, answer_margin=0.1)
        meter = config.meters[0]
        with open_storage(url) as storage:
            async with Collector(config, storage, [], clock=clock) as collector:
                first = await collector.read_meter(meter, clock.now())
                assert isinstance(first, ReadingRecord), first
                assert collector.protocols.found("m0") == ("iec", None)
                assert storage.known_protocols(["m0"]) == {"m0": ("iec", None)}
                await head.__aexit__(None, None, None)  # the mode A head is gone ...
                tcp_port = int(port.rsplit(":", 1)[1])
                # ... and a KMP meter answers on the same port (mode A requests: silence)
                with KmpEmulatorThread(1, port=tcp_port) as kmp:
                    assert kmp.ports == [port]
                    caplog.set_level(logging.WARNING, "kamstrup382.collector.protocols")
                    silent = []
                    for _ in range(SILENT_READOUTS):
                        failed = await collector.read_meter(meter, clock.now())
                        assert isinstance(failed, FailureRecord), failed
                        silent.append(failed.kind)
                    assert silent == ["timeout"] * SILENT_READOUTS
                    assert collector.protocols.found("m0") is None
                    assert storage.known_protocols(["m0"]) == {}  # a restart detects again
                    assert "nothing answered iec in 3 readouts in a row" in caplog.text
                    again = await collector.read_meter(meter, clock.now())
                    assert isinstance(again, KmpReadingRecord), again
                    assert collector.protocols.found("m0") == ("kmp", (9600, 1))
                    assert storage.known_protocols(["m0"]) == {"m0": ("kmp", 9600)}


def test_what_counts_as_silence() -> None:
    from kamstrup382.collector.protocols import ProtocolFinder

    finder = ProtocolFinder([])
    finder.load({"m": ("iec", None), "n": ("kmp", 9600)})
    nothing = ReadTimeout("no answer", phase="answer", received=0)
    stopped = ReadTimeout("reply stopped", phase="inter_character", received=40)
    # a reply that began, a lost connection, a success: the count starts again
    for interruption in (stopped, ConnectionLost("gone"), None):
        for _ in range(SILENT_READOUTS - 1):
            assert not finder.readout_ended("m", nothing)
        assert not finder.readout_ended("m", interruption)
    assert finder.found("m") == ("iec", None)
    for _ in range(SILENT_READOUTS - 1):
        assert not finder.readout_ended("m", nothing)
    assert finder.readout_ended("m", nothing)
    assert finder.found("m") is None
    assert not finder.readout_ended("m", nothing)  # nothing found: nothing to forget
    assert finder.found("n") == ("kmp", (9600, 1))  # the other meter's finding stays
    assert not finder.readout_ended("nobody", nothing)  # not an auto meter
