"""The outputs' tests define each fixture once: a fixture two modules need is in
``conftest.py`` (pytest hands it to every module of the folder), not copied into both."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent


def _is_fixture(decorator: ast.expr) -> bool:
    """``@pytest.fixture`` or ``@pytest.fixture(...)``."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "fixture"
        and isinstance(target.value, ast.Name)
        and target.value.id == "pytest"
    )


def _without_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The fixture's code as a tree (names, arguments, decorators and body; not its docstring,
    its comments or its layout)."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    copy = type(node)(**{**{f: getattr(node, f) for f in node._fields}, "body": body})
    return ast.dump(copy)


def fixtures_by_code(folder: Path) -> dict[str, list[str]]:
    """The fixtures of ``folder``'s modules by their code: code -> ``module:name`` each."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                _is_fixture(d) for d in node.decorator_list
            ):
                found[_without_docstring(node)].append(f"{path.name}:{node.name}")
    return found


def test_no_fixture_is_defined_twice_in_the_outputs_tests() -> None:
    copies = [places for places in fixtures_by_code(HERE).values() if len(places) > 1]
    assert copies == [], f"the same fixture in several modules (move it to conftest.py): {copies}"


def test_the_check_finds_a_copied_fixture(tmp_path: Path) -> None:
    """The check itself: a fixture copied into a second module is found, whatever its
    docstring; a module's own fixture of the same name but other code is not a copy."""
    fixture = (
        "import pytest\n\n\n@pytest.fixture\ndef storage(tmp_path):\n{doc}"
        "    with open_storage(f'sqlite:///{{tmp_path}}/{name}') as store:\n"
        "        yield store\n"
    )
    (tmp_path / "test_a.py").write_text(fixture.format(doc="", name="a.sqlite"))
    (tmp_path / "test_b.py").write_text(fixture.format(doc='    """Mine."""\n', name="a.sqlite"))
    (tmp_path / "test_c.py").write_text(fixture.format(doc="", name="c.sqlite"))
    copies = [places for places in fixtures_by_code(tmp_path).values() if len(places) > 1]
    assert copies == [["test_a.py:storage", "test_b.py:storage"]]
