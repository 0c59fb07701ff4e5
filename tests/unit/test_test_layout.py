"""The tests' own layout, enforced by reading their imports: a test module imports shared
fakes from tests/fakes and shared set-up from tests/support, never another test module (which
would drag that module's fixtures along and hide where the shared part lives)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
TEST_PACKAGES = ("tests.unit", "tests.integration", "tests.e2e")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    "path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS))
)
def test_no_module_imports_a_test_module(path: Path) -> None:
    test_imports = {
        module
        for module in imported_modules(path)
        if module.startswith(TEST_PACKAGES) and module not in TEST_PACKAGES
    }
    assert not test_imports, f"move what is shared to tests/support or tests/fakes: {test_imports}"
