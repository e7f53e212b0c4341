"""Policy hot reload: a valid change applies without a restart, a broken one keeps the last good
policy and says where it is broken, and a Kubernetes-style symlink swap is picked up."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import aiohttp
import pytest
from support import POLICY, chat, eventually, policy

from proxy.policy import load_policy
from proxy.policy.watcher import PolicyWatcher, Reload
from proxy.testing.local import local_stack

EVERY = 0.05


async def send(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.post(
        url + "/v1/chat/completions", json=chat(), headers={"X-Cycles-Tenant": "alpha"}
    ) as r:
        await r.read()
        return r.status, r.headers.get("X-Cycles-Remaining", "")


def rewrite(path: Path, text: str) -> None:
    """Give `path` new content at once, as an editor or `kubectl cp` would: written to a temporary
    file in the same directory, then renamed over it, so the watcher polling every EVERY s never
    reads a half-written policy."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def policy_text(budgets: str) -> str:
    indented = "\n".join("      " + line for line in budgets.strip().splitlines())
    return POLICY.format(budgets=indented, mode="enforce", extra="")


async def test_lower_tenant_limit_applies_to_the_next_call_without_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.policy.watcher")
    first = policy(tmp_path, "tenant: {limit: 10, period: month}")
    path = tmp_path / "policy.yaml"
    async with (
        local_stack(first, policy_path=str(path), reload_every=EVERY) as stack,
        aiohttp.ClientSession() as session,
    ):
        status, remaining = await send(session, stack.url)
        assert status == 200 and remaining.startswith("9.99")
        rewrite(path, policy_text("tenant: {limit: 5, period: month}"))

        async def lowered() -> bool:
            status, remaining = await send(session, stack.url)
            return status == 200 and remaining.startswith("4.99")

        await eventually(lowered, "the lowered limit applying (4.99… USD remaining)")
        rewrite(path, policy_text("tenant: {limit: 0.000001, period: month}"))

        async def denied() -> bool:
            return (await send(session, stack.url))[0] == 402

        await eventually(denied, "a call denied under the tiny limit")
        assert stack.fake.calls >= 2
    assert "policy reloaded" in caplog.text


async def test_broken_edit_keeps_the_last_good_policy_and_names_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = policy(tmp_path, "tenant: {limit: 10, period: month}")
    path = tmp_path / "policy.yaml"
    broken = policy_text("tenant: {limitt: 5, period: month}")
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "limitt" in text)
    async with (
        local_stack(first, policy_path=str(path), reload_every=EVERY) as stack,
        aiohttp.ClientSession() as session,
    ):
        rewrite(path, broken)

        async def reported() -> bool:
            return any(
                r.levelno == logging.ERROR and f"{path}:{line}:" in r.getMessage()
                for r in caplog.records
            )

        await eventually(reported, f"an ERROR naming {path}:{line}")
        status, remaining = await send(session, stack.url)
        assert status == 200 and remaining.startswith("9.99")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "the same broken content is reported once"
    assert "limitt" in errors[0].getMessage()


def configmap(root: Path, version: str, text: str) -> None:
    """Lay out (or update) `root` the way the kubelet mounts a ConfigMap: the files live in a
    timestamped directory, `..data` points at it, and `policy.yaml` points through `..data`."""
    target = root / f"..{version}"
    target.mkdir()
    (target / "policy.yaml").write_text(text)
    (root / "..data_tmp").symlink_to(target.name)
    os.replace(root / "..data_tmp", root / "..data")
    if not (root / "policy.yaml").is_symlink():
        (root / "policy.yaml").symlink_to("..data/policy.yaml")


async def test_configmap_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    configmap(root, "2026_01", policy_text("tenant: {limit: 10, period: month}"))
    async with (
        local_stack(load_policy(root), policy_path=str(root), reload_every=EVERY) as stack,
        aiohttp.ClientSession() as session,
    ):
        assert (await send(session, stack.url))[1].startswith("9.99")
        configmap(root, "2026_02", policy_text("tenant: {limit: 3, period: month}"))

        async def swapped() -> bool:
            return (await send(session, stack.url))[1].startswith("2.99")

        await eventually(swapped, "the swapped ConfigMap's limit applying (2.99… USD remaining)")


async def test_identity_change_needs_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = policy(tmp_path, "tenant: {limit: 10, period: month}")
    path = tmp_path / "policy.yaml"
    applied = []

    async def apply(new: object) -> None:
        applied.append(new)

    watcher = PolicyWatcher(Reload(str(path), EVERY), first, apply)
    await watcher.poll()
    rewrite(path, path.read_text().replace("identity: header", "identity: api_key"))
    await watcher.poll()
    assert applied == []
    assert "identity: changed from header to api_key" in caplog.text
