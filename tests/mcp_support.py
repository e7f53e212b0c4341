"""The MCP front's tests share: an MCP server (tests/mcp_upstream.py, the mcp SDK's MCPServer)
run as a subprocess in JSON or SSE answer mode, a policy that fronts it, the proxy in-process,
and the official mcp Client pointed at the proxy with headers (through httpx2)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from conftest import free_port
from mcp import Client
from mcp.client.session import ElicitationFnT
from mcp.client.streamable_http import streamable_http_client

from proxy.policy import load_policy
from proxy.testing.local import Stack, local_stack

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

    def messages(self) -> list[dict[str, Any]]:
        """Each POSTed message's id, method and whether it is a response, in order."""
        path = self.dir / "messages"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def pings(self) -> int:
        path = self.dir / "pings"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def confirmed(self, prefix: str = "") -> list[str]:
        """The `to` of every confirm_send that sent, starting with `prefix`."""
        path = self.dir / "confirmed"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith(prefix)]

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


POLICY = """
identity: header
upstreams:
  openai: {{base_url: "https://api.openai.com/v1"}}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
mcp_servers:
  crm:
    url: "{url}"
    token_env: CRM_MCP_TOKEN
    timeout_seconds: {timeout}
    unpriced_tools: {unpriced}
actions:
  "mcp:crm/send_email": {{EMAILS: 1}}
  "mcp:crm/fail": {{EMAILS: 1, charge_on_error: {fail_rule}}}
  "mcp:crm/slow": {{EMAILS: 1}}
  "mcp:crm/progress": {{EMAILS: 1}}
  "mcp:crm/protocol_error": {{EMAILS: 1}}
  "mcp:crm/crash": {{EMAILS: 1}}
  "mcp:crm/confirm_send": {{EMAILS: 1}}
plans:
  starter:
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 10, unit: EMAILS, period: day}}
  narrow:
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 10, unit: EMAILS, period: day}}
    quotas:
      tools: ["mcp:crm/ping"]
  careful:
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 10, unit: EMAILS, period: day}}
    degrade:
      - when: {{scope: tenant, remaining_below: "50%"}}
        set: {{hide_tools: ["mcp:crm/send_email"]}}
  stepped:
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 100, unit: EMAILS, period: day}}
    quotas:
      steps_per_run: 3
  few:
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 3, unit: EMAILS, period: day}}
  single:
    budgets:
      tenant: {{limit: 5, period: month}}
    action_budgets:
      tenant: {{limit: 1, unit: EMAILS, period: day}}
tenants:
  acme: {{plan: starter}}
  beta: {{plan: starter}}
  shady: {{plan: starter, mode: shadow}}
  slim: {{plan: narrow}}
  care: {{plan: careful}}
  steps: {{plan: stepped}}
  frugal: {{plan: few}}
  lone: {{plan: single}}
"""


@asynccontextmanager
async def proxy(
    tmp_path: Path,
    upstream: Upstream,
    store_url: str = "memory://",
    *,
    server_timeout: int = 30,
    fail_rule: str = "reserved",
    unpriced: str = "allow",
    extra: str = "",
) -> AsyncIterator[Stack]:
    """The proxy in-process, fronting `upstream` as server `crm` (`extra`: more policy)."""
    path = tmp_path / "policy.yaml"
    text = POLICY.format(
        url=upstream.url, timeout=server_timeout, fail_rule=fail_rule, unpriced=unpriced
    )
    path.write_text(text + extra)
    async with local_stack(load_policy(path), store=store_url, sweep_every=None) as stack:
        yield stack


@asynccontextmanager
async def client(
    stack: Stack,
    tenant: str = "acme",
    mode: str = "legacy",
    elicit: ElicitationFnT | None = None,
    **headers: str,
) -> AsyncIterator[Client]:
    """The official mcp Client on /mcp/crm, as `tenant` (scope headers), in `mode`; `elicit`
    answers the server's elicitations."""
    sent = {"X-Cycles-Tenant": tenant, **headers}
    http = httpx2.AsyncClient(headers=sent, timeout=httpx2.Timeout(30, read=60))
    transport = streamable_http_client(stack.url + "/mcp/crm", http_client=http)
    session = Client(transport, mode=mode, elicitation_callback=elicit)  # type: ignore[arg-type]
    async with http, session:
        yield session


async def emails(stack: Stack, tenant: str = "acme") -> tuple[int, int]:
    """(spent, reserved) EMAILS on the tenant's line."""
    for row in await stack.ledger.balances(tenant):
        if row.unit == "EMAILS" and row.level == "tenant":
            return row.spent, row.reserved
    return 0, 0


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
