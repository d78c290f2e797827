"""``status``, ``export`` and ``serve`` read a database: they find it, say which, never make one."""

from __future__ import annotations

from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.storage.url import open_storage
from tests.storage.samples import reading


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No config file anywhere, and a default database location of the test's own."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("K382_CONFIG", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [["status"], ["export"], ["serve", "--http", "127.0.0.1:0"]],
    ids=["status", "export", "serve"],
)
def test_a_missing_database_is_not_created(
    command: list[str], places: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = places / "missing.sqlite"
    assert main([*command, "--storage", f"sqlite:///{missing}"]) == 1
    assert f"no database at {missing}" in capsys.readouterr().err
    assert not missing.exists()
    # nothing named: the default, said, and not created either
    assert main(command) == 1
    err = capsys.readouterr().err
    default = places / "data" / "kamstrup382" / "readings.sqlite"
    assert f"database: sqlite:///{default} (the default" in err
    assert f"no database at {default}" in err
    assert not default.exists()
    assert not default.parent.exists()


def test_the_config_found_names_the_database(
    places: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = places / "readings.sqlite"
    with open_storage(f"sqlite:///{db}") as storage:
        storage.record([reading("house", 0)], [])
    config = places / "work" / "k382.toml"
    config.write_text(f'[storage]\nurl = "sqlite:///{db}"\n')
    assert main(["status"]) == 0
    out = capsys.readouterr()
    assert "house" in out.out
    assert f"database: sqlite:///{db} (the config {config})" in out.err
    assert main(["export", "--format", "jsonl"]) == 0
    assert '"meter": "house"' in capsys.readouterr().out
    # named explicitly: nothing said
    assert main(["status", "--config", str(config)]) == 0
    assert "database:" not in capsys.readouterr().err


def test_a_config_variable_naming_nothing_is_an_error(
    places: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("K382_CONFIG", str(places / "gone.toml"))
    for command in (["status"], ["export"], ["serve"]):
        assert main(command) == 2
        assert "K382_CONFIG" in capsys.readouterr().err
