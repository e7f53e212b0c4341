"""The MCP tests share: an MCP server (tests/mcp_upstream.py, the mcp SDK's MCPServer) run as a
subprocess in JSON or SSE answer mode, with what it saw kept in files (`Upstream`), and session
fixtures that start it (`upstream` in each mode, `sse_upstream`)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

HERE = Path(__file__).resolve().parent
TOKEN_ENV = "CRM_MCP_TOKEN"
TOKEN = "crm-secret-token"


@dataclass(frozen=True, slots=True)
class Upstream:
    """A running MCP server: its URL, and what it saw (files in `dir`)."""

    url: str
    dir: Path
    mode: str
    """json or sse: how it answers POSTs."""

    def sent(self, prefix: str = "") -> list[str]:
        """The `to` of every send_email that ran, starting with `prefix`."""
        path = self.dir / "sent"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith(prefix)]

    def headers(self) -> list[dict[str, Any]]:
        path = self.dir / "headers"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def slow_done(self) -> int:
        path = self.dir / "slow"
        return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError("the MCP server exited at start")
        time.sleep(0.05)
    raise TimeoutError("the MCP server did not listen within 20 s")


@contextmanager
def mcp_upstream(directory: Path, mode: str) -> Iterator[Upstream]:
    """tests/mcp_upstream.py in a subprocess (its own event loop; killed at the end)."""
    port = free_port()
    args = [sys.executable, str(HERE / "mcp_upstream.py"), str(port), str(directory)]
    proc = subprocess.Popen([*args, *(["--json"] if mode == "json" else [])])
    try:
        _wait_port(port, proc)
        yield Upstream(f"http://127.0.0.1:{port}/mcp", directory, mode)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session", params=("sse", "json"))
def upstream(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Upstream]:
    """The MCP server in each answer mode, for the session."""
    with mcp_upstream(tmp_path_factory.mktemp(f"mcp-{request.param}"), request.param) as up:
        yield up


@pytest.fixture(scope="session")
def sse_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """The MCP server answering in SSE, for tests that need one mode."""
    with mcp_upstream(tmp_path_factory.mktemp("mcp-sse-only"), "sse") as up:
        yield up
