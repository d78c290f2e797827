"""Log lines for a terminal and for systemd's journal; what -v, -vv and -vvv show."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamstrup382.cli.logs import level_for, setup_logging, to_journal


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    ours = logging.getLogger("kamstrup382")
    saved = (list(root.handlers), root.level, ours.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def test_the_levels() -> None:
    assert level_for(0) == (logging.WARNING, logging.WARNING)
    assert level_for(1) == (logging.INFO, logging.WARNING)
    assert level_for(0, base=1) == (logging.INFO, logging.WARNING)
    assert level_for(2) == (logging.DEBUG, logging.WARNING)
    assert level_for(3) == (logging.DEBUG, logging.DEBUG)


def _log_to(path: Path, env_stream: str | None, verbose: int) -> str:
    with path.open("w") as stream:
        if env_stream is None:
            os.environ.pop("JOURNAL_STREAM", None)
        else:
            os.environ["JOURNAL_STREAM"] = env_stream
        try:
            setup_logging(verbose, stream=stream)
            logging.getLogger("kamstrup382.collector").info("slot done: 3 read")
            logging.getLogger("kamstrup382.collector").debug("details")
            logging.getLogger("aiomqtt").debug("packet dump")
            logging.getLogger("kamstrup382.storage").error("two\nlines")
            for handler in logging.getLogger().handlers:
                handler.flush()
        finally:
            os.environ.pop("JOURNAL_STREAM", None)
    return path.read_text()


def test_journal_lines_carry_a_priority_and_no_time(tmp_path: Path, restore_logging: None) -> None:
    file = tmp_path / "journal"
    file.touch()
    status = file.stat()
    text = _log_to(file, f"{status.st_dev}:{status.st_ino}", 1)
    assert text.splitlines() == [
        "<6>kamstrup382.collector: slot done: 3 read",
        "<3>kamstrup382.storage: two",
        "<3>lines",
    ]


def test_elsewhere_lines_carry_a_time(tmp_path: Path, restore_logging: None) -> None:
    text = _log_to(tmp_path / "log", None, 3)
    lines = text.splitlines()
    assert lines[0].endswith("INFO kamstrup382.collector: slot done: 3 read")
    assert lines[0][:4].isdigit()  # the year of the time stamp
    assert any(line.endswith("DEBUG aiomqtt: packet dump") for line in lines)  # -vvv
    # another file's device and inode: not the journal
    other = tmp_path / "other"
    other.touch()
    status = other.stat()
    text = _log_to(tmp_path / "log2", f"{status.st_dev}:{status.st_ino}", 0)
    assert text.splitlines()[0].endswith("ERROR kamstrup382.storage: two")
    assert "slot done" not in text


def test_to_journal_needs_a_well_formed_variable(tmp_path: Path) -> None:
    with (tmp_path / "x").open("w") as stream:
        assert not to_journal(stream, {"JOURNAL_STREAM": "nonsense"})
        assert not to_journal(stream, {})
