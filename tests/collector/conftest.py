"""Fixtures of the collector tests: a storage URL for each backend, a config builder, and
meters the collector has seen before."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kamstrup382.collector import Collector
from kamstrup382.collector.config import Config, parse_config
from kamstrup382.protocol import Observation, decode_reply

#: The specification's example reply, 7-bit (what the scripted meter answers).
EXAMPLE = (Path(__file__).parent.parent / "data" / "spec-example.bin").read_bytes()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty storage: a SQLite file in tmp_path or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'readings.sqlite'}"
    else:
        yield request.getfixturevalue("postgres_db_url")


def make_config(
    url: str,
    ports: Sequence[str],
    *,
    extra: str = "",
    meter_extra: dict[int, str] | None = None,
    **collector: Any,
) -> Config:
    """A config for ``ports`` (meters m0, m1, ...), read into ``url``."""
    settings = {"flush_interval": 0.05, "answer_timeout": 0.3, "backoff": 0.05, **collector}
    lines = [f'[storage]\nurl = "{url}"\n', "[collector]"]
    lines += [
        f"{key} = {str(value).lower() if isinstance(value, bool) else repr(value)}"
        for key, value in settings.items()
    ]
    for index, port in enumerate(ports):
        lines.append(f'[[meters]]\nname = "m{index}"\nport = "{port}"')
        if meter_extra and index in meter_extra:
            lines.append(meter_extra[index])
    text = "\n".join(lines).replace("'", '"') + "\n" + extra
    return parse_config(tomllib.loads(text), env={})


def seen_before(collector: Collector, meters: Iterable[str], at: datetime | None = None) -> None:
    """``meters`` read before by ``collector`` (their last reading: the specification's example,
    at ``at``, by default a quarter of an hour before the collector's clock now): their next
    reading follows it (the scripted meter's same values) and needs no confirming attempt.
    Kept over what the storage holds (the collector loads that at start only for meters it has
    no history of)."""
    values = decode_reply(EXAMPLE).meter_values()
    when = at if at is not None else collector.clock.now() - timedelta(minutes=15)
    for name in meters:
        collector.history.accepted(name, Observation(values, when))
