"""No test module imports another: what tests share lives in tests/*_support.py (and support.py),
so running, moving or deleting one test module never changes what another collects or runs."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_file_of_the_suite_imports_a_test_module() -> None:
    test_modules = {path.stem for path in TESTS.rglob("test_*.py")}
    found = {
        f"{path.name} imports {', '.join(sorted(imported_modules(path) & test_modules))}"
        for path in sorted(TESTS.rglob("*.py"))
        if imported_modules(path) & test_modules
    }
    assert not found, "move what they share into a tests/*_support.py module: " + "; ".join(
        sorted(found)
    )
