"""Odd `events.sinks[].path` values: a policy is refused with a PolicyError naming the field,
never a stack trace (an OSError out of `cycles-proxy check`, `serve` or a reload), and a path
that can never be appended to is refused when the policy loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policy import EXAMPLE
from proxy.policy.issues import PolicyError
from proxy.policy.loader import load_policy

BASE = (
    EXAMPLE.read_text()
    + """
events:
  sinks:
    - {type: jsonl, path: PATH}
"""
)


def _policy(tmp_path: Path, path: str) -> Path:
    f = tmp_path / "p.yaml"
    f.write_text(BASE.replace("PATH", path))
    return f


@pytest.mark.parametrize("name", ["a" * 300, "d/" + "b" * 300])
def test_a_path_too_long_is_a_policy_error_not_an_oserror(tmp_path: Path, name: str) -> None:
    (tmp_path / "d").mkdir()
    policy = _policy(tmp_path, f"'{tmp_path}/{name}'")
    with pytest.raises(PolicyError, match=r"sinks\[0\]\.path"):
        load_policy(policy)  # raises OSError [Errno 36] from writable()'s path.exists()


@pytest.mark.parametrize("path", ["TMP", "TMP/x\\0y"])
def test_a_path_that_can_never_be_appended_to_is_refused(tmp_path: Path, path: str) -> None:
    """A directory, or a path with a NUL byte (open() raises ValueError), passes writable()."""
    policy = _policy(tmp_path, '"' + path.replace("TMP", str(tmp_path)) + '"')
    with pytest.raises(PolicyError, match=r"sinks\[0\]\.path"):
        load_policy(policy)


async def test_a_reload_to_a_too_long_path_keeps_the_watcher_alive(tmp_path: Path) -> None:
    """The watcher catches PolicyError only: the OSError ends `poll` (and `run`, so every later
    reload is silently never made)."""
    from proxy.policy.watcher import PolicyWatcher, Reload

    f = tmp_path / "p.yaml"
    f.write_text(EXAMPLE.read_text())
    current = load_policy(f)
    applied = []

    async def apply(p: object) -> None:
        applied.append(p)

    watcher = PolicyWatcher(Reload(str(f)), current, apply)
    f.write_text(BASE.replace("PATH", f"'{tmp_path}/{'a' * 300}'"))
    await watcher.poll()  # raises OSError [Errno 36]
    assert applied == []


async def test_a_round_that_fails_unexpectedly_does_not_end_the_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault other than a PolicyError in one reload round is logged; the next round still
    reloads the policy."""
    import asyncio

    from proxy.policy import watcher as watching

    f = tmp_path / "p.yaml"
    f.write_text(EXAMPLE.read_text())
    applied: list[object] = []

    async def apply(p: object) -> None:
        applied.append(p)

    calls = {"n": 0}
    real = watching.load_policy

    def flaky(path: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a fault the loader did not foresee")
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(watching, "load_policy", flaky)
    watcher = watching.PolicyWatcher(watching.Reload(str(f), every=0.01), load_policy(f), apply)
    task = asyncio.ensure_future(watcher.run())
    try:
        f.write_text(EXAMPLE.read_text() + "\n# changed once\n")
        for _ in range(200):
            await asyncio.sleep(0.01)
            if calls["n"] >= 1:
                break
        f.write_text(EXAMPLE.read_text() + "\n# changed twice\n")
        for _ in range(300):
            await asyncio.sleep(0.01)
            if applied:
                break
    finally:
        task.cancel()
    assert calls["n"] >= 2 and len(applied) == 1
