"""Download the core's dependency closure as wheels: for this machine, 32-bit and 64-bit ARM.

    python3 scripts/wheelhouse.py [DIR]     # DIR: .cache/wheelhouse by default

The core (``pip install kamstrup382`` without extras) must install on a Raspberry Pi, where
PyPI has no wheels of compiled packages for 32-bit ARM (armv7l) and building them needs a
compiler. So its dependencies must resolve to pure-Python wheels. ``pip download
--only-binary=:all: --platform ...`` resolves the closure as pip would on such a machine and
fails if a dependency has no wheel usable there; every wheel it takes must be ``-none-any``
(pure Python). The ``host`` folder also gets what building the project needs (the build
backend from ``[build-system]``), so that tests/test_install.py can make a fresh virtual
environment and ``pip install`` the project into it without a network.

Run by ``scripts/test`` before the tests (this is the step that needs the package registry).
Exits 1, naming the platform and the wheel, if the closure is not pure Python.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: folder name -> pip's --platform tags (None: this machine)
PLATFORMS: dict[str, tuple[str, ...] | None] = {
    "host": None,
    "armv7l": ("linux_armv7l", "manylinux2014_armv7l"),
    "aarch64": ("linux_aarch64", "manylinux2014_aarch64"),
}


def requirements() -> tuple[list[str], list[str]]:
    """The core's dependencies and the build system's, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(project["project"]["dependencies"]), list(project["build-system"]["requires"])


def download(folder: Path, platforms: tuple[str, ...] | None, wanted: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-d", str(folder)]
    for platform in platforms or ():
        command += ["--platform", platform]
    subprocess.run([*command, *wanted], check=True)


def not_pure(folder: Path) -> list[str]:
    """The wheels in ``folder`` that are not pure Python."""
    return sorted(p.name for p in folder.glob("*.whl") if not p.name.endswith("-none-any.whl"))


def main(argv: list[str]) -> int:
    base = Path(argv[0]) if argv else ROOT / ".cache" / "wheelhouse"
    core, build = requirements()
    for name, platforms in PLATFORMS.items():
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            download(folder, platforms, core + build if platforms is None else core)
        except subprocess.CalledProcessError:
            print(f"wheelhouse: the core's dependencies do not resolve for {name}", file=sys.stderr)
            return 1
        if platforms is not None and (bad := not_pure(folder)):
            print(f"wheelhouse: not pure Python for {name}: {', '.join(bad)}", file=sys.stderr)
            return 1
    print(f"wheelhouse: {base}: the core's closure is pure Python on {', '.join(PLATFORMS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
