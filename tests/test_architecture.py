"""The map of docs/architecture.md, checked: layers import only downward, rooms stay small,
every exception the package defines descends from the one root.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import kamstrup382
from kamstrup382.errors import Kamstrup382Error

PACKAGE = Path(kamstrup382.__file__).resolve().parent
MAX_LINES = 600

#: Each room of the package and its layer, lowest first. A module may import from a lower
#: layer and from its own room; never from a higher layer, nor from another room of its own
#: layer (the reader and the emulator meet only through the protocol below them).
LAYERS: dict[str, int] = {
    "errors": 0,
    "clock": 1,
    "pulses": 2,
    "systemd": 1,
    "extras": 1,
    "protocol": 1,
    "reader": 2,
    "emulator": 2,
    "storage": 3,
    "settings": 4,
    "documents": 4,
    "outputs": 5,
    "collector": 6,
    "web": 7,
    "render": 7,
    "cli": 8,
    "__init__": 9,
    "__main__": 9,
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_rooms(path: Path) -> set[str]:
    """The rooms of ``kamstrup382`` that ``path`` imports, at any depth of its code."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    return _rooms_in(path.read_text(encoding="utf-8"), package)


def _rooms_in(source: str, package: tuple[str, ...]) -> set[str]:
    tree = ast.parse(source)
    rooms: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join((*base, node.module or ""))]
            else:
                names = [node.module or ""]
            if names == ["kamstrup382"]:
                names = [f"kamstrup382.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "kamstrup382" and len(parts) > 1 and parts[1] in LAYERS:
                rooms.add(parts[1])
    return rooms


def test_every_room_has_a_layer() -> None:
    rooms = {_room(path) for path in _modules()}
    assert rooms <= set(LAYERS), f"rooms without a layer: {sorted(rooms - set(LAYERS))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downward(path: Path) -> None:
    room = _room(path)
    layer = LAYERS[room]
    wrong = sorted(
        other
        for other in _imported_rooms(path)
        if other != room and LAYERS.get(other, 99) >= layer and layer < LAYERS["__init__"]
    )
    assert not wrong, f"{room} (layer {layer}) imports from {wrong}"


def test_outputs_know_nothing_of_the_collector() -> None:
    for path in (PACKAGE / "outputs").rglob("*.py"):
        assert "collector" not in _imported_rooms(path), path


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name}: {lines} lines"


def test_every_exception_descends_from_the_root() -> None:
    strays: list[str] = []
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="kamstrup382."):
        if info.name.endswith("__main__"):
            continue  # running it is the command line
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and obj.__module__ == module.__name__
                and issubclass(obj, BaseException)
                and not issubclass(obj, Kamstrup382Error)
            ):
                strays.append(f"{module.__name__}.{name}")
    assert not strays, f"exceptions outside the hierarchy: {strays}"


def test_the_layer_test_sees_every_form_of_import() -> None:
    """The check itself: absolute, package-level, relative and function-level imports."""
    source = (
        "from kamstrup382.collector.config import load_config\n"
        "from kamstrup382 import storage\n"
        "import kamstrup382.web.app\n"
        "from ..outputs import base\n"
        "def later() -> None:\n"
        "    from kamstrup382.cli import main\n"
    )
    assert _rooms_in(source, ("kamstrup382", "protocol")) == {
        "collector",
        "storage",
        "web",
        "outputs",
        "cli",
    }
