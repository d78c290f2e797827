"""A relative SQLite path in a config file is relative to the file, not to the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from kamstrup382.collector.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "k382.toml"
    config.write_text('[storage]\nurl = "sqlite:///data/readings.sqlite?synchronous=normal"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = load_config(config, env={}).storage.url
    assert url == f"sqlite:///{folder / 'data' / 'readings.sqlite'}?synchronous=normal"


def test_absolute_paths_and_other_urls_are_kept(tmp_path: Path) -> None:
    config = tmp_path / "k382.toml"
    for url in ("sqlite:////var/lib/k382/r.sqlite", "postgresql://k382@db.example/k382"):
        config.write_text(f'[storage]\nurl = "{url}"\n')
        assert load_config(config, env={}).storage.url == url
    # parsed without a file (a program's own dict): nothing to be relative to
    parsed = parse_config({"storage": {"url": "sqlite:///r.sqlite"}}, env={})
    assert parsed.storage.url == "sqlite:///r.sqlite"


def test_the_example_writes_beside_itself() -> None:
    url = load_config(ROOT / "examples" / "k382.toml", env={}).storage.url
    assert url == f"sqlite:///{ROOT / 'examples' / 'readings.sqlite'}"
