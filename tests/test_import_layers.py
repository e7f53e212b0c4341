"""The package's import direction is checked by a tool, and the tool catches a reverse import.

pyproject.toml's [tool.importlinter] contracts say imports point down the story of a request
(core ← policy ← metering ← budget ← gateway ← actions ← app ← admin ← settings ← testing ← cli)
and that the store stands on core alone; that actions and admin use the gateway's admission and
events, never its internals; `.ci/run` runs `lint-imports`. These tests run it on a copy of the
package, clean and then with one import that points the wrong way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "proxy", tmp_path / "proxy", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_package_keeps_every_import_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "reverse", "contract"),
    [
        ("core/ids.py", "import proxy.gateway.handlers", "Imports point down"),
        ("policy/runtime.py", "import proxy.metering.pricing", "Imports point down"),
        ("store/ledger/base.py", "import proxy.policy.runtime", "The store imports only core"),
        ("metering/pricing.py", "import proxy.store.ledger.base", "never reach the store"),
        ("store/redis/wire.py", "import proxy.store.ledger", "Redis plumbing knows no store"),
        ("store/ledger/memory.py", "import proxy.store.tenants.memory", "knows no tenant store"),
        ("actions/routes.py", "import proxy.gateway.alerts", "never its internals"),
        ("admin/api.py", "import proxy.gateway.handlers", "never its internals"),
    ],
)
def test_one_reverse_import_breaks_its_contract(
    tmp_path: Path, module: str, reverse: str, contract: str
) -> None:
    root = _copy(tmp_path)
    path = root / "proxy" / module
    path.write_text(path.read_text() + f"\n{reverse}  # the wrong way\n")
    result = _lint(root)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert len(broken) == 1 and contract in broken[0], result.stdout
