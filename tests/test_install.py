"""The core alone, as ``pip install kamstrup382`` gives it: a fresh virtual environment.

It installs from pure-Python wheels only (the wheelhouse ``scripts/wheelhouse.py`` downloads,
which fails if the core's dependencies need anything else on armv7l or aarch64), offline; the
commands of the core work (emulate, read, collect --once, status, export); none of the
extras' packages is there; what needs an extra says which, and exits 2.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
#: the packages of the extras (and plotly, which the dashboard no longer needs)
NOT_IN_CORE = {
    "aiomqtt",
    "httpx",
    "jinja2",
    "plotly",
    "prometheus-client",
    "psycopg",
    "psycopg-binary",
    "starlette",
    "uvicorn",
    "uvloop",
}

pytestmark = pytest.mark.slow


def _pure(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.whl"))


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``bin`` folder of a fresh venv with ``pip install .`` (no extras), done offline."""
    host = WHEELHOUSE / "host"
    if not _pure(host):
        pytest.skip("no wheelhouse: run python3 scripts/wheelhouse.py (scripts/test does)")
    base = tmp_path_factory.mktemp("core")
    source = base / "source"  # a copy: building writes into the source tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**_env(), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(host)}
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
        check=True,
        env=env,
        timeout=300,
    )
    yield venv / "bin"


def _env() -> dict[str, str]:
    """This environment without our checkout on the path and without the machine's pip config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(bin_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "k382"), *args],
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=120,
    )


def test_the_core_closure_is_pure_python_on_arm() -> None:
    for platform in ("armv7l", "aarch64"):
        wheels = _pure(WHEELHOUSE / platform)
        assert wheels, f"no wheelhouse for {platform}: run python3 scripts/wheelhouse.py"
        assert all(name.endswith("-none-any.whl") for name in wheels), wheels
        names = {re.split(r"-\d", name, maxsplit=1)[0].lower() for name in wheels}
        assert names == {"click", "pyserial", "platformdirs"}


def test_no_extra_is_installed(core: Path) -> None:
    listed = subprocess.run(
        [str(core / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert "kamstrup382" in names
    assert not names & NOT_IN_CORE, names & NOT_IN_CORE


def test_the_core_commands_work(core: Path, tmp_path: Path) -> None:
    with subprocess.Popen(
        [str(core / "k382"), "emulate", "--tcp", "127.0.0.1:0", "--speed", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    ) as emulator:
        assert emulator.stdout is not None
        port = None
        for _ in range(5):
            line = emulator.stdout.readline()
            if match := re.search(r"socket://\S+", line):
                port = match[0]
                break
        assert port is not None
        read = _run(core, "read", port, "--json")
        emulator.terminate()
    assert read.returncode == 0, read.stderr
    registers = json.loads(read.stdout)["registers"]
    assert registers["customer_number"]["value"] == "00054042"
    url = f"sqlite:///{tmp_path / 'core.sqlite'}"
    collect = _run(core, "collect", "--once", "--emulator", "2", "--speed", "100", "--storage", url)
    assert collect.returncode == 0, collect.stderr
    status = _run(core, "status", "--storage", url, "--json")
    assert status.returncode == 0, status.stderr
    assert len(json.loads(status.stdout)) == 2
    export = _run(core, "export", "--storage", url, "--format", "csv")
    assert export.returncode == 0, export.stderr
    assert len(export.stdout.splitlines()) == 3  # the header and two readings


def test_what_needs_an_extra_says_which(core: Path, tmp_path: Path) -> None:
    listing = _run(core, "--help")
    assert listing.returncode == 0
    assert "needs the [web] extra" in listing.stdout
    for args in (["serve", "--storage", "sqlite:///x.sqlite"], ["demo"]):
        result = _run(core, *args, cwd=tmp_path)
        assert result.returncode == 2, result
        assert "the dashboard needs: pip install 'kamstrup382[web]'" in result.stderr
        assert "Traceback" not in result.stderr
    config = tmp_path / "k382.toml"
    for table, extra, enables in (
        ('[mqtt]\nhost = "127.0.0.1"\n', "mqtt", "the MQTT output"),
        ("[prometheus]\nport = 9382\n", "prometheus", "the Prometheus output"),
        (
            '[influxdb]\nurl = "http://127.0.0.1:8086"\ndatabase = "k382"\n',
            "influxdb",
            "the InfluxDB output",
        ),
    ):
        config.write_text(
            f'[storage]\nurl = "sqlite:///{tmp_path / "x.sqlite"}"\n'
            f'[[meters]]\nname = "a"\nport = "socket://127.0.0.1:1"\n{table}'
        )
        result = _run(core, "collect", "--once", "--config", str(config))
        assert result.returncode == 2, result
        assert f"{enables} needs: pip install 'kamstrup382[{extra}]'" in result.stderr
    result = _run(core, "status", "--storage", "postgresql://k382@127.0.0.1:1/k382")
    assert result.returncode == 2, result
    assert "PostgreSQL storage needs: pip install 'kamstrup382[postgres]'" in result.stderr
