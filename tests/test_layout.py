"""The package stays readable at a glance (issue 16, STYLE.md): at most 10 modules sit directly
under proxy/, no module is over 400 lines and no function over 50.

A module's lines are its text's lines. A function's run from its `def` line to its last line
(decorators apart); a nested function counts inside its parent and on its own. The checks read
the source with `ast`, so they see the whole package, imported or not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "proxy"
MAX_TOP_MODULES = 10
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def top_modules(package: Path) -> list[str]:
    """The modules directly under `package` (not those of its subpackages)."""
    return sorted(path.name for path in package.glob("*.py"))


def long_modules(package: Path) -> dict[str, int]:
    """Each module over MAX_MODULE_LINES, by its path from the package's parent: its lines."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found[path.relative_to(package.parent).as_posix()] = lines
    return found


def long_functions(package: Path) -> dict[str, list[str]]:
    """Each module with a function over MAX_FUNCTION_LINES: those functions, with their lines."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                module = path.relative_to(package.parent).as_posix()
                found.setdefault(module, []).append(f"{node.name} ({lines} lines)")
    return found


def test_at_most_ten_modules_sit_directly_under_proxy() -> None:
    top = top_modules(PACKAGE)
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules directly under proxy/: {top}"


def test_no_module_is_over_400_lines() -> None:
    found = long_modules(PACKAGE)
    assert not found, f"split these into modules of one idea each (lines): {found}"


def test_no_function_is_over_50_lines() -> None:
    found = long_functions(PACKAGE)
    assert not found, f"split these into well-named helpers: {found}"


def test_the_checks_catch_a_401_line_module_and_a_51_line_function(tmp_path: Path) -> None:
    package = tmp_path / "proxy"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "long.py").write_text("x = 1\n" * 401)
    (package / "sub" / "full.py").write_text("x = 1\n" * 400)
    body = "    pass\n"
    (package / "sub" / "calls.py").write_text(
        "def fits() -> None:\n" + body * 49 + "\n\nasync def too_long() -> None:\n" + body * 50
    )
    for i in range(MAX_TOP_MODULES + 1):
        (package / f"m{i}.py").write_text("")

    assert long_modules(package) == {"proxy/sub/long.py": 401}
    assert long_functions(package) == {"proxy/sub/calls.py": ["too_long (51 lines)"]}
    assert len(top_modules(package)) == MAX_TOP_MODULES + 1
