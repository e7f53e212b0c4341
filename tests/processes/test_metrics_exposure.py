"""Tenant-labelled metrics are served only where tenants cannot reach them: in gateway mode never
on the proxy port, but on the admin listener (admin or read token) or `--metrics-listen`, which
off loopback asks for CYCLES_METRICS_TOKEN."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from boundary_support import ADMIN, READER, bearer, call, gateway, sidecar, with_admin
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families
from support import chat, chat_prompt_tokens, line, mini_cost, proxy_in_front_of

from proxy.app import build_metrics_app
from proxy.gateway import scrape
from proxy.gateway.context import API_KEYS
from proxy.policy import load_policy
from proxy.settings import Settings, validate
from proxy.store.api_keys import RedisKeyStore
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import serving


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
        key, _ = await stack.app[API_KEYS].create("alpha")
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
        key, _ = await stack.app[API_KEYS].create("alpha")
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
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cycles-proxy serve` in gateway mode with --metrics-listen on every interface and
    CYCLES_METRICS_TOKEN: what the chart runs. /metrics is there, for the token only."""
    gateway(tmp_path)
    keys = RedisKeyStore(redis_url)
    try:
        key, _ = await keys.create("alpha")
    finally:
        await keys.close()
    port = free_port()
    listen = ("--metrics-listen", f"0.0.0.0:{port}")
    monkeypatch.setenv(scrape.ENV, "scrape-token-1")
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
        metrics = f"http://127.0.0.1:{port}/metrics"
        for headers in ({}, bearer(key)):
            async with http.get(metrics, headers=headers) as r:
                assert r.status == 401 and "alpha" not in await r.text()
        async with http.get(metrics, headers=bearer("scrape-token-1")) as r:
            assert r.status == 200
            assert tenants_in(await r.text()) == {"alpha"}


async def test_the_metrics_listener_answers_only_a_bearer_of_the_token(tmp_path: Path) -> None:
    """Either of two tokens (while rotating) is served; no token, another one or a tenant's API
    key gets a 401 that says what to send, and nothing about any tenant. /healthz stays open."""
    async with with_admin(gateway(tmp_path), "memory://") as (stack, _):
        key, _ = await stack.app[API_KEYS].create("alpha")
        assert (await call(stack, "POST", "/v1/chat/completions", bearer(key), chat()))[0] == 200
        listener = build_metrics_app(stack.app, ("scrape-new", "scrape-old"))
        async with serving(listener) as url, aiohttp.ClientSession() as http:
            for headers in ({}, bearer("scrape-wrong"), bearer(key), {"Authorization": "x"}):
                async with http.get(url + "/metrics", headers=headers) as r:
                    body = await r.json()
                    assert r.status == 401 and "alpha" not in str(body)
                    assert body["error"]["code"] == "invalid_metrics_token"
                    assert scrape.ENV in body["error"]["message"]
            for token in ("scrape-new", "scrape-old"):
                async with http.get(url + "/metrics", headers=bearer(token)) as r:
                    assert r.status == 200 and tenants_in(await r.text()) == {"alpha"}
            async with http.get(url + "/healthz") as r:
                assert r.status == 200


def test_a_gateway_refuses_to_serve_metrics_off_loopback_without_a_token(tmp_path: Path) -> None:
    """A pod IP is reachable from every pod of the cluster: a gateway will not start serving
    every tenant's spend there to anyone, and says what to do instead."""
    gateway(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != scrape.ENV}
    argv = [sys.executable, "-m", "proxy", "serve", "--policy", str(tmp_path / "policy.yaml")]
    argv += ["--admin-listen", "off", "--metrics-listen", f"0.0.0.0:{port}"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert scrape.ENV in result.stderr and "--allow-unauthenticated-metrics" in result.stderr
    assert "Traceback" not in result.stderr
    policy = load_policy(tmp_path / "policy.yaml")
    wide = Settings(policy="p", metrics=("0.0.0.0", port))
    for fine in (
        replace(wide, metrics_tokens=("scrape-token",)),
        replace(wide, allow_unauthenticated_metrics=True),
        replace(wide, metrics=("127.0.0.1", port)),
    ):
        validate(fine, policy)
    validate(wide, sidecar(tmp_path))  # a sidecar's own tenants: the token is optional there
