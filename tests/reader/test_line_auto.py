"""``line = "auto"``, the default for ``socket://``: a gateway passing the parity bit (8N1 on its
serial side) and one doing 7E1 itself are told apart by the reply's '/'."""

from __future__ import annotations

import pytest

from kamstrup382.cli import main
from kamstrup382.collector.config import parse_config
from kamstrup382.emulator import Emulator, EmulatorThread
from kamstrup382.errors import ConfigError, UsageError
from kamstrup382.reader import AsyncReader, Reader
from kamstrup382.reader.port import LineMode, default_line

SPEED = 200.0


def test_auto_is_the_default_for_socket_only() -> None:
    assert default_line("socket://127.0.0.1:4001") is LineMode.AUTO
    assert default_line("/dev/ttyUSB0") is LineMode.SEVEN_E_ONE
    assert default_line("rfc2217://127.0.0.1:4001") is LineMode.SEVEN_E_ONE
    with pytest.raises(UsageError, match="line auto is for socket://"):
        Reader("/dev/ttyUSB0", line="auto")
    with pytest.raises(ConfigError, match=r"meters\[0\]\.line"):
        parse_config({"meters": [{"name": "a", "port": "/dev/ttyUSB0", "line": "auto"}]}, env={})


@pytest.mark.parametrize("eight_bit", [True, False], ids=["gateway 8N1", "gateway 7E1"])
def test_the_reply_tells_the_line(eight_bit: bool) -> None:
    with (
        EmulatorThread(transport="tcp", speed=SPEED, eight_bit=eight_bit) as emulator,
        Reader(emulator.ports[0]) as reader,
    ):
        first = reader.read()
        second = reader.read()
    expected = LineMode.EIGHT_N_ONE if eight_bit else LineMode.SEVEN_E_ONE
    assert first.line is second.line is expected
    assert first.meter_values().customer_number == second.meter_values().customer_number
    assert first.meter_values().customer_number == "00054042"


@pytest.mark.parametrize("eight_bit", [True, False], ids=["gateway 8N1", "gateway 7E1"])
async def test_the_async_reader_too(eight_bit: bool) -> None:
    async with (
        Emulator(transport="tcp", speed=SPEED, eight_bit=eight_bit, faults="noise=1") as emulator,
        AsyncReader(emulator.ports[0]) as reader,
    ):
        reading = await reader.read()  # noise before the reply, whatever its bit 7
    assert reading.line is (LineMode.EIGHT_N_ONE if eight_bit else LineMode.SEVEN_E_ONE)
    assert reading.attempts == 1


def test_a_fixed_mode_that_is_wrong_still_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorThread(transport="tcp", speed=SPEED, eight_bit=False) as emulator:
        code = main(["read", emulator.ports[0], "--line", "8N1", "--retries", "0"])
    assert code == 1
    assert "parity" in capsys.readouterr().err
