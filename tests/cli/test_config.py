"""``k382 config`` and the search for the configuration file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kamstrup382.cli import main
from kamstrup382.cli.config_file import find_config
from kamstrup382.collector.config import load_config
from kamstrup382.errors import ConfigError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory and a user config directory of the test's own, K382_CONFIG unset."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("K382_CONFIG", raising=False)
    return tmp_path


def test_init_writes_an_annotated_file_only_its_owner_reads(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "init", "--port", "socket://127.0.0.1:4001", "--name", "house"]) == 0
    file = home / "work" / "k382.toml"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    text = file.read_text()
    assert "# k382 configuration, written by `k382 config init`" in text
    config = load_config(file, env={})
    assert [(m.name, m.port) for m in config.meters] == [("house", "socket://127.0.0.1:4001")]
    # never over an existing file, unless asked
    assert main(["config", "init"]) == 2
    assert "exists (--force replaces it)" in capsys.readouterr().err
    assert main(["config", "init", "--force", "--name", "garage"]) == 0
    assert load_config(file, env={}).meters[0].name == "garage"
    # a value the checks refuse leaves the file as it was
    assert main(["config", "init", "--force", "--name", 'a "quoted" name']) == 2
    assert "meters[0].name" in capsys.readouterr().err
    assert load_config(file, env={}).meters[0].name == "garage"
    assert [p.name for p in file.parent.iterdir()] == ["k382.toml"]


def test_init_refuses_a_port_the_checks_refuse(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "init", "--port", "socket://[zz]:1"]) == 2
    assert "meters[0].port" in capsys.readouterr().err
    assert not (home / "work" / "k382.toml").exists()


def test_check_says_good_or_names_the_key(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check"]) == 2
    assert "no config file found" in capsys.readouterr().err
    assert main(["config", "init"]) == 0
    capsys.readouterr()
    assert main(["config", "check"]) == 0
    assert "k382.toml: good: 1 meter(s)" in capsys.readouterr().out
    bad = home / "bad.toml"
    bad.write_text('[[meters]]\nname = "a"\nport = "/dev/ttyUSB0"\nline = "9N1"\n')
    assert main(["config", "check", str(bad)]) == 2
    assert "meters[0].line" in capsys.readouterr().err
    bad.write_bytes(b'[[meters]]\nname = "\xff"\n')
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err
    assert "Traceback" not in err


def test_the_search_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = home / "xdg" / "k382" / "k382.toml"
    assert find_config(None) is None
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert find_config(None) == user
    here = home / "work" / "k382.toml"
    here.write_text("")
    assert find_config(None) == here
    named = home / "named.toml"
    named.write_text("")
    monkeypatch.setenv("K382_CONFIG", str(named))
    assert find_config(None) == named
    explicit = home / "explicit.toml"
    explicit.write_text("")
    assert find_config(explicit) == explicit
    # a name that points nowhere is an error, not a reason to look elsewhere
    with pytest.raises(ConfigError, match=r"explicit-missing\.toml"):
        find_config(home / "explicit-missing.toml")
    monkeypatch.setenv("K382_CONFIG", str(home / "gone.toml"))
    with pytest.raises(ConfigError, match="K382_CONFIG"):
        find_config(None)


def test_path_shows_what_is_used(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "path"]) == 1
    assert "no config file found" in capsys.readouterr().out
    assert main(["config", "init"]) == 0
    capsys.readouterr()
    assert main(["config", "path"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(home / "work" / "k382.toml")
    assert "(found)" in out.err
