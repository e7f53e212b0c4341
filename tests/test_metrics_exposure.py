"""Tenant-labelled metrics are served only where tenants cannot reach them: in gateway mode never
on the proxy port, but on the admin listener (admin or read token) or `--metrics-listen`."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from boundary_support import ADMIN, READER, bearer, call, gateway, sidecar, with_admin
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families
from support import chat, chat_prompt_tokens, line, mini_cost, proxy_in_front_of

from proxy.context import RUNTIME
from proxy.fake_upstream import FakeUpstream
from proxy.keys import open_key_store


def tenants_in(text: str) -> set[str]:
    """Every `tenant` label value of a Prometheus text page."""
    return {
        s.labels["tenant"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "tenant" in s.labels
    }


async def test_gateway_proxy_port_serves_no_metrics_to_anyone(tmp_path: Path) -> None:
    async with with_admin(gateway(tmp_path), "memory://") as (stack, _):
        key, _ = await stack.app[RUNTIME].keys.create("alpha")
        status, _ = await call(stack, "POST", "/v1/chat/completions", bearer(key), chat())
        assert status == 200
        row = await line(stack.ledger, "alpha", "tenant")
        assert row.spent == mini_cost(chat_prompt_tokens(chat()), 100)
        for headers in ({}, bearer(key)):
            status, answer = await call(stack, "GET", "/metrics", headers)
            assert status == 404, answer
            assert "alpha" not in str(answer) and "cycles_" not in str(answer)


async def test_the_admin_listener_serves_metrics_to_admin_and_read_tokens(tmp_path: Path) -> None:
    async with with_admin(gateway(tmp_path), "memory://") as (stack, admin):
        key, _ = await stack.app[RUNTIME].keys.create("alpha")
        assert (await call(stack, "POST", "/v1/chat/completions", bearer(key), chat()))[0] == 200
        for token in (None, "wrong", key):
            status, _, answer = await admin.call("GET", "/metrics", token=token)
            assert status == 401 and "alpha" not in str(answer)
        for token in (ADMIN, READER):
            status, headers, text = await admin.call("GET", "/metrics", token=token)
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            assert tenants_in(text) == {"alpha"}


async def test_a_sidecar_keeps_metrics_on_its_loopback_port(tmp_path: Path) -> None:
    """Sidecar mode trusts the app in its pod with every tenant header already, and its proxy
    port listens on loopback only: the metrics stay there (and on --metrics-listen)."""
    async with with_admin(sidecar(tmp_path), "memory://") as (stack, _):
        tenant = {"X-Cycles-Tenant": "alpha"}
        assert (await call(stack, "POST", "/v1/chat/completions", tenant, chat()))[0] == 200
        status, text = await call(stack, "GET", "/metrics", {})
        assert status == 200 and tenants_in(text) == {"alpha"}


async def test_a_gateway_process_serves_metrics_on_its_metrics_listener_only(
    tmp_path: Path, redis_url: str
) -> None:
    """`cycles-proxy serve` in gateway mode with --metrics-listen: what the chart runs."""
    gateway(tmp_path)
    keys = open_key_store(redis_url)
    try:
        key, _ = await keys.create("alpha")
    finally:
        await keys.close()
    port = free_port()
    listen = ("--metrics-listen", f"127.0.0.1:{port}")
    fake = FakeUpstream()
    async with (
        proxy_in_front_of(fake, tmp_path / "policy.yaml", redis_url, 0, *listen) as (url, _),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(url + "/v1/chat/completions", json=chat(), headers=bearer(key)) as r:
            assert r.status == 200
        for headers in ({}, bearer(key)):
            async with http.get(url + "/metrics", headers=headers) as r:
                assert r.status == 404
                assert "alpha" not in await r.text()
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200
            assert tenants_in(await r.text()) == {"alpha"}
