"""The tariff schedule's default zone: the system's, with its rules (``TZ``, else
/etc/localtime, else UTC), so that a schedule in local time keeps to the wall clock across a
DST change; read from the real zone files."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.cli.emulate import _reply
from kamstrup382.clock import ManualClock
from kamstrup382.collector.config import parse_config
from kamstrup382.collector.pulse_config import system_zone
from kamstrup382.collector.tariff_control import TariffControl
from kamstrup382.emulator.control_server import ControlServer
from kamstrup382.emulator.tariff import TariffSchedule
from kamstrup382.errors import ConfigError
from kamstrup382.pulses.tariff import TariffBoard
from tests.collector.test_tariff_control import emulated, until

ZONEINFO = Path("/usr/share/zoneinfo")
COPENHAGEN = ZONEINFO / "Europe" / "Copenhagen"
WINTER, SUMMER = datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC)


@pytest.fixture
def set_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    """Sets (``None``: unsets) the process's ``TZ``, as the C library sees it too."""

    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("TZ", raising=False)
        else:
            monkeypatch.setenv("TZ", value)
        time.tzset()

    yield set_to
    monkeypatch.undo()
    time.tzset()


def offsets(zone: tzinfo) -> tuple[float, float]:
    """The zone's UTC offset in winter and in summer, in hours."""
    hours = []
    for moment in (WINTER, SUMMER):
        offset = moment.astimezone(zone).utcoffset()
        assert offset is not None
        hours.append(offset.total_seconds() / 3600)
    return hours[0], hours[1]


@pytest.mark.parametrize(
    "tz", ["Europe/Copenhagen", ":Europe/Copenhagen", str(COPENHAGEN), f":{COPENHAGEN}"]
)
def test_tz_names_the_zone(tz: str, tmp_path: Path) -> None:
    zone = system_zone({"TZ": tz}, tmp_path / "no-localtime")
    assert str(zone) == "Europe/Copenhagen" and offsets(zone) == (1, 2)


def test_a_tz_file_outside_a_zoneinfo_directory_is_read(tmp_path: Path) -> None:
    copy = tmp_path / "copenhagen.tzif"
    shutil.copyfile(COPENHAGEN, copy)
    zone = system_zone({"TZ": f":{copy}"}, tmp_path / "no-localtime")
    assert str(zone) == str(copy) and offsets(zone) == (1, 2)


@pytest.mark.parametrize("tz", ["CET-1CEST,M3.5.0,M10.5.0/3", "Nowhere/Else", "/no/such/file"])
def test_a_tz_that_names_no_zone_is_a_config_error(tz: str) -> None:
    with pytest.raises(ConfigError) as caught:
        system_zone({"TZ": tz})
    assert caught.value.key == "TZ" and repr(tz) in caught.value.problem


def test_localtime_linked_into_a_zoneinfo_directory_is_that_zone(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    absolute = tmp_path / "etc" / "localtime"
    absolute.symlink_to(COPENHAGEN)
    zone = system_zone({}, absolute)
    assert str(zone) == "Europe/Copenhagen" and offsets(zone) == (1, 2)
    # a relative link, as systemd's timedatectl makes it, into a zoneinfo directory of its own
    zoneinfo = tmp_path / "usr" / "share" / "zoneinfo" / "America"
    zoneinfo.mkdir(parents=True)
    shutil.copyfile(ZONEINFO / "America" / "New_York", zoneinfo / "New_York")
    absolute.unlink()
    absolute.symlink_to("../usr/share/zoneinfo/America/New_York")
    zone = system_zone({"TZ": ""}, absolute)  # an empty TZ: not set
    assert str(zone) == "America/New_York" and offsets(zone) == (-5, -4)


def test_localtime_as_a_plain_file_is_read(tmp_path: Path) -> None:
    localtime = tmp_path / "localtime"
    shutil.copyfile(ZONEINFO / "Australia" / "Sydney", localtime)  # as containers copy it
    zone = system_zone({}, localtime)
    assert offsets(zone) == (11, 10)
    assert system_zone({}, localtime) == zone  # the same zone again: a reload changes nothing


def test_no_zone_at_all_is_utc_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert system_zone({}, tmp_path / "localtime") is UTC
    assert "using UTC" in caplog.text and str(tmp_path / "localtime") in caplog.text
    (tmp_path / "localtime").write_bytes(b"not a zone file")
    assert system_zone({}, tmp_path / "localtime") is UTC


def meter(**keys: Any) -> dict[str, Any]:
    base = {"name": "house", "port": "socket://127.0.0.1:4001", "tariff_output": "tcp://h:1"}
    return {"meters": [{**base, **keys}]}


def schedule_of(config: dict[str, Any]) -> TariffSchedule:
    tariff = parse_config(config, env={}).meters[0].tariff
    assert tariff is not None and tariff.schedule is not None
    return tariff.schedule


def test_a_schedule_without_a_zone_keeps_local_time_across_dst_changes(
    set_tz: Callable[[str | None], None],
) -> None:
    set_tz("Europe/Copenhagen")  # the collector started in winter (CET, UTC+1) ...
    schedule = schedule_of(meter(tariff_schedule="22:00-06:00"))
    # ... and runs through 29 March 2026 (02:00 CET -> 03:00 CEST) and 25 October 2026
    # (03:00 CEST -> 02:00 CET): tariff 2 from 22:00 to 06:00 local time on each side
    for at, tariff in (
        ("2026-03-28T20:59:59Z", 1),  # 21:59:59 CET
        ("2026-03-28T21:00:00Z", 2),  # 22:00 CET
        ("2026-03-29T03:59:59Z", 2),  # 05:59:59 CEST, after the change
        ("2026-03-29T04:00:00Z", 1),  # 06:00 CEST
        ("2026-03-29T19:59:59Z", 1),  # 21:59:59 CEST
        ("2026-03-29T20:00:00Z", 2),  # 22:00 CEST (a fixed UTC+1 would say 21:00: tariff 1)
        ("2026-03-30T04:30:00Z", 1),  # 06:30 CEST (a fixed UTC+1: 05:30, tariff 2)
        ("2026-10-24T20:00:00Z", 2),  # 22:00 CEST
        ("2026-10-25T04:59:59Z", 2),  # 05:59:59 CET, after the change back
        ("2026-10-25T05:00:00Z", 1),  # 06:00 CET
        ("2026-10-25T20:30:00Z", 1),  # 21:30 CET (a fixed UTC+2 would say 22:30: tariff 2)
        ("2026-10-25T21:00:00Z", 2),  # 22:00 CET
    ):
        assert schedule.tariff_at(datetime.fromisoformat(at)) == tariff, at
    assert schedule.next_boundary(datetime.fromisoformat("2026-03-29T12:00:00Z")) == (
        datetime.fromisoformat("2026-03-29T20:00:00Z")
    )


def shows(board: TariffBoard, tariff: int) -> bool:
    return board.state("house").tariff == tariff


async def test_the_tariff_output_follows_the_schedule_across_dst_changes(
    set_tz: Callable[[str | None], None],
) -> None:
    """The collector's tariff control driving an emulated meter's control port, its clock
    moved over both of 2026's changes in Copenhagen."""
    set_tz("Europe/Copenhagen")
    clock = ManualClock(datetime.fromisoformat("2026-03-28T20:59:00Z"))  # 21:59 CET
    async with emulated() as emulator:
        control = ControlServer(lambda line: _reply(emulator, line), "127.0.0.1", 0)
        await control.start()
        try:
            config = parse_config(
                meter(tariff_output=control.url, tariff_schedule="22:00-06:00"), env={}
            )
            tariffs = TariffControl(config.meters, clock)
            await tariffs.start()
            try:
                board = tariffs.board
                # each step a switch (none passes before the control has seen the clock)
                for at, tariff in (
                    ("2026-03-28T20:59:00Z", 1),  # 21:59 CET
                    ("2026-03-28T21:00:01Z", 2),  # 22:00:01 CET
                    ("2026-03-29T04:00:01Z", 1),  # 06:00:01 CEST, after the change (UTC+1: 2)
                    ("2026-03-29T20:00:01Z", 2),  # 22:00:01 CEST (UTC+1: 21:00:01, 1)
                    ("2026-10-24T12:00:00Z", 1),  # 14:00 CEST
                    ("2026-10-25T04:30:00Z", 2),  # 05:30 CET, after the change back (UTC+2: 1)
                    ("2026-10-25T05:00:01Z", 1),  # 06:00:01 CET
                    ("2026-10-25T21:00:01Z", 2),  # 22:00:01 CET
                ):
                    clock.set(datetime.fromisoformat(at))
                    await until(partial(shows, board, tariff), 5, f"{at}: tariff {tariff}")
                    assert board.state("house").origin == "schedule"
            finally:
                await tariffs.close()
        finally:
            await control.close()


def test_a_bad_tz_names_the_key_that_would_spare_it(
    set_tz: Callable[[str | None], None],
) -> None:
    set_tz("CET-1CEST,M3.5.0,M10.5.0/3")
    with pytest.raises(ConfigError) as caught:
        schedule_of(meter(tariff_schedule="22:00-06:00"))
    assert caught.value.key == "meters[0].tariff_zone"
    assert "not given, and the system's TZ 'CET-1CEST" in caught.value.problem
    # named, it needs no TZ
    zone = schedule_of(meter(tariff_schedule="22:00-06:00", tariff_zone="Europe/Berlin")).zone
    assert str(zone) == "Europe/Berlin"
