"""Two `serve` processes on one host: the second finds a port taken, and says so in one line
(the address and the flag that changes it) and exits 2, before it serves anything."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support import listening, policy, proxy_in_front_of

from proxy.testing.fake_upstream import FakeUpstream


async def second_serve(path: Path, store: str, *args: str) -> tuple[int, str]:
    """`cycles-proxy serve` with `args`, until it exits: its status and what it printed."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "proxy", "serve", "--policy", str(path), "--store", store),
        *("--upstream", "http://127.0.0.1:9/v1", "--drain-timeout", "0", *args),
        env={**os.environ, "OPENAI_API_KEY": "sk-unused"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def address(url: str | None) -> str:
    assert url is not None
    return urlsplit(url).netloc


def told_once(printed: str, taken: str, flag: str) -> None:
    """One line names the address taken and the flag; nothing else says anything went wrong."""
    lines = [line for line in printed.splitlines() if "already in use" in line]
    assert lines == [
        f"cycles-proxy: {taken} ({flag}) is already in use by another process (another "
        f"cycles-proxy on this host?); give this one a free address with {flag} HOST:PORT"
        + ("." if flag == "--listen" else f", or {flag} off.")
    ], printed
    assert "Traceback" not in printed and "ERROR" not in printed, printed
    assert "listening on" not in printed, printed


@pytest.mark.timeout(120)
async def test_a_second_serve_on_a_taken_admin_port_says_so_in_one_line_and_exits_2(
    tmp_path: Path,
) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path = tmp_path / "policy.yaml"
    extra = ("--admin-listen", "127.0.0.1:0")
    async with proxy_in_front_of(FakeUpstream(), path, "memory://", 0, *extra) as (_, first):
        taken = address(listening(first)["admin"])
        status, printed = await second_serve(
            path, "memory://", "--listen", "127.0.0.1:0", "--admin-listen", taken
        )
        assert first.returncode is None  # the first one goes on serving
    assert status == 2
    told_once(printed, taken, "--admin-listen")


@pytest.mark.timeout(120)
async def test_a_second_serve_on_a_taken_proxy_port_says_so_in_one_line_and_exits_2(
    tmp_path: Path,
) -> None:
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path = tmp_path / "policy.yaml"
    async with proxy_in_front_of(FakeUpstream(), path, "memory://") as (url, _):
        taken = address(url)
        status, printed = await second_serve(
            path, "memory://", "--listen", taken, "--admin-listen", "off"
        )
    assert status == 2
    told_once(printed, taken, "--listen")


@pytest.mark.timeout(120)
async def test_workers_on_a_taken_port_say_so_once_and_exit_2(
    tmp_path: Path, redis_url: str
) -> None:
    """Under --workers the parent finds the port taken before it starts any worker: one line,
    not one per worker."""
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path = tmp_path / "policy.yaml"
    extra = ("--metrics-listen", "127.0.0.1:0", "--allow-unauthenticated-metrics")
    async with proxy_in_front_of(FakeUpstream(), path, redis_url, 0, *extra) as (_, first):
        taken = address(listening(first)["metrics"])
        status, printed = await second_serve(
            path,
            redis_url,
            *("--workers", "2", "--listen", "127.0.0.1:0", "--admin-listen", "off"),
            *("--metrics-listen", taken, "--allow-unauthenticated-metrics"),
        )
    assert status == 2
    told_once(printed, taken, "--metrics-listen")
