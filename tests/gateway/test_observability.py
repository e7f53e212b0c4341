"""Observability: /metrics, /readyz, request ids, trace headers, one JSON log line per call."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import free_port
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families
from support import (
    chat,
    chat_prompt_tokens,
    eventually,
    listening,
    mini_cost,
    mini_reserved,
    policy,
    printed,
    proxy_in_front_of,
    usd,
)

from proxy.core.errors import SettingsError
from proxy.core.types import ReservationSettings
from proxy.gateway.logs import _PATTERNS, REDACTED, JsonFormatter, RedactingFilter, redact
from proxy.gateway.metrics import (
    DEFAULT_MAX_TENANTS,
    OTHER,
    FirstSeen,
    Metrics,
    max_tenants_from_env,
    tenants_from_env,
)
from proxy.store.api_keys import RedisKeyStore
from proxy.store.open import open_store
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import Stack, local_stack

Samples = list[tuple[str, dict[str, str], float]]


async def post(
    session: aiohttp.ClientSession,
    stack: Stack,
    body: dict[str, Any],
    tenant: str = "alpha",
    **headers: str,
) -> aiohttp.ClientResponse:
    hdrs = {"X-Cycles-Tenant": tenant, **headers}
    async with session.post(f"{stack.url}/v1/chat/completions", json=body, headers=hdrs) as r:
        await r.read()
        return r


async def scrape(session: aiohttp.ClientSession, stack: Stack) -> Samples:
    async with session.get(f"{stack.url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    return sum(
        v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items())
    )


def upstream_headers(stack: Stack) -> list[CIMultiDict[str]]:
    """The headers of each request the fake provider received, looked up case-insensitively."""
    return [CIMultiDict(headers) for _, headers, _ in stack.fake.requests]


def call_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The per-call JSON lines (cycles.calls also carries the LEDGER UNAVAILABLE warnings)."""
    return [
        orjson.loads(r.getMessage())
        for r in caplog.records
        if r.name == "cycles.calls" and r.getMessage().startswith('{"event":"call"')
    ]


def budget_for(calls: int) -> str:
    """A tenant budget that admits `calls` calls of chat(), one after another, and no more:
    `calls` reservations (what those calls leave unspent of them holds no other)."""
    reserved = mini_reserved(chat_prompt_tokens(chat()), 100)
    return f"tenant: {{limit: {usd(calls * reserved)}, period: month}}"


async def test_metrics_count_allowed_and_denied_calls_and_spend(tmp_path: Path) -> None:
    pol = policy(tmp_path, budget_for(3))
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        statuses = [(await post(session, stack, chat())).status for _ in range(4)]
        assert statuses == [200, 200, 200, 402]
        samples = await scrape(session, stack)
    labels = {"endpoint": "chat", "model": "gpt-4o-mini"}
    assert value(samples, "cycles_requests_total", decision="ALLOW", status="200", **labels) == 3
    assert value(samples, "cycles_requests_total", decision="DENY", status="402", **labels) == 1
    assert value(samples, "cycles_tenant_requests_total", tenant="alpha", decision="ALLOW") == 3
    spent = sum(mini_cost(b.prompt_tokens, b.completion_tokens) for b in stack.fake.billed)
    assert value(samples, "cycles_committed_units_total", unit="USD") == spent
    assert (
        value(samples, "cycles_tenant_committed_units_total", tenant="alpha", unit="USD") == spent
    )
    assert value(samples, "cycles_reserved_units_total", unit="USD") >= spent
    assert value(samples, "cycles_ledger_seconds_count", op="reserve") == 4
    assert value(samples, "cycles_ledger_seconds_count", op="commit") == 3
    assert value(samples, "cycles_ledger_errors_total") == 0
    assert value(samples, "cycles_upstream_seconds_count", endpoint="chat") == 3
    assert value(samples, "cycles_upstream_first_byte_seconds_count", endpoint="chat") == 3
    assert value(samples, "cycles_in_flight") == 0


async def test_degrade_rule_and_quota_denial_are_counted(tmp_path: Path) -> None:
    plan = """
    quotas: {models: ["gpt-4o-mini"], steps_per_run: 1}
    degrade:
      - {when: {model_not_allowed: true}, set: {model: gpt-4o-mini}}
    """
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}", plan=plan)
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        first = await post(session, stack, chat(model="gpt-4o"), **{"X-Cycles-Run": "r1"})
        assert first.headers["X-Cycles-Caps"] == "model=gpt-4o-mini"
        second = await post(session, stack, chat(), **{"X-Cycles-Run": "r1"})
        assert second.status == 429
        samples = await scrape(session, stack)
    assert value(samples, "cycles_degradations_total", rule="degrade[0]") == 1
    assert value(samples, "cycles_quota_denials_total", quota="steps_per_run") == 1
    assert value(samples, "cycles_requests_total", decision="ALLOW_WITH_CAPS", model="gpt-4o") == 1


async def test_at_most_n_tenant_series_with_1000_tenants(tmp_path: Path) -> None:
    pol = dataclasses.replace(
        policy(tmp_path, "tenant: {limit: 1, period: month}"), unknown_tenant="test"
    )
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        tenants = [f"t{i:04d}" for i in range(1000)]
        for batch in range(0, len(tenants), 100):
            results = await asyncio.gather(
                *(post(session, stack, chat(), tenant=t) for t in tenants[batch : batch + 100])
            )
            assert {r.status for r in results} == {200}
        samples = await scrape(session, stack)
    seen = {ls["tenant"] for _, ls, _ in samples if "tenant" in ls}
    assert len(seen) <= DEFAULT_MAX_TENANTS + 1
    assert OTHER in seen
    assert value(samples, "cycles_tenant_requests_total") == 1000
    assert (
        value(samples, "cycles_tenant_requests_total", tenant=OTHER) == 1000 - DEFAULT_MAX_TENANTS
    )


def test_first_seen_keeps_the_first_n_values() -> None:
    cap = FirstSeen(2)
    assert [cap(v) for v in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


def test_allow_listed_values_keep_their_series_after_the_cap() -> None:
    cap = FirstSeen(2, always={"vip"})
    seen = [cap(v) for v in ("a", "b", "c", "vip", "d", "vip")]
    assert seen == ["a", "b", OTHER, "vip", OTHER, "vip"]
    only_listed = FirstSeen(0, always={"vip"})
    assert [only_listed(v) for v in ("a", "vip")] == [OTHER, "vip"]


def test_allow_listed_tenant_seen_after_the_cap_gets_its_own_series() -> None:
    metrics = Metrics(max_tenants=2, tenants=tenants_from_env({"CYCLES_METRICS_TENANTS": "VIP"}))
    for tenant in ("a", "b", "c", "vip"):
        metrics.tenant_requests.labels(metrics.tenant(tenant), "ALLOW").inc()
    text = metrics.render().decode()
    assert 'cycles_tenant_requests_total{decision="ALLOW",tenant="vip"} 1.0' in text
    assert 'cycles_tenant_requests_total{decision="ALLOW",tenant="other"} 1.0' in text
    assert 'tenant="c"' not in text


async def test_proxy_reads_the_tenant_allow_list_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CYCLES_METRICS_MAX_TENANTS", "1")
    monkeypatch.setenv("CYCLES_METRICS_TENANTS", "Beta")
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        for tenant in ("alpha", "gamma", "beta"):
            assert (await post(session, stack, chat(), tenant=tenant)).status == 200
        samples = await scrape(session, stack)
    seen = {ls["tenant"] for n, ls, _ in samples if n == "cycles_tenant_requests_total"}
    assert seen == {"alpha", "beta", OTHER}


def test_tenant_allow_list_comes_from_the_environment() -> None:
    assert tenants_from_env({}) == frozenset()
    assert tenants_from_env({"CYCLES_METRICS_TENANTS": " Acme, initech ,,"}) == {"acme", "initech"}
    with pytest.raises(SettingsError, match="is not a tenant id"):
        tenants_from_env({"CYCLES_METRICS_TENANTS": "acme corp"})


def test_max_tenants_comes_from_the_environment() -> None:
    assert max_tenants_from_env({}) == DEFAULT_MAX_TENANTS
    assert max_tenants_from_env({"CYCLES_METRICS_MAX_TENANTS": "7"}) == 7
    with pytest.raises(SettingsError, match="whole number"):
        max_tenants_from_env({"CYCLES_METRICS_MAX_TENANTS": "lots"})


async def test_readyz_and_healthz_answer_without_identity(tmp_path: Path) -> None:
    pol = policy(tmp_path, budget_for(1))
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(stack.url + path) as r:
                assert r.status == 200, path
        async with session.get(stack.url + "/readyz") as r:
            assert (await r.json())["status"] == "ready"


async def test_client_request_id_is_echoed_and_sent_upstream(tmp_path: Path) -> None:
    pol = policy(tmp_path, budget_for(1))
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        ok = await post(session, stack, chat(), **{"X-Request-Id": "job-42.step_1"})
        denied = await post(session, stack, chat(), **{"X-Request-Id": "job-42.step_2"})
        assert (ok.status, ok.headers["X-Request-Id"]) == (200, "job-42.step_1")
        assert (denied.status, denied.headers["X-Request-Id"]) == (402, "job-42.step_2")
        assert upstream_headers(stack)[0]["X-Request-Id"] == "job-42.step_1"


async def test_insane_or_missing_request_id_is_replaced(tmp_path: Path) -> None:
    pol = policy(tmp_path, budget_for(2))
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        bad = await post(session, stack, chat(), **{"X-Request-Id": "a b;" + "x" * 200})
        plain = await post(session, stack, chat())
        unknown = await post(session, stack, chat(), tenant="nobody")
    ids = [r.headers["X-Request-Id"] for r in (bad, plain, unknown)]
    assert unknown.status == 403
    assert all(len(i) == 32 and i.isalnum() for i in ids) and len(set(ids)) == 3
    assert [h["X-Request-Id"] for h in upstream_headers(stack)] == ids[:2]


async def test_trace_context_reaches_the_upstream(tmp_path: Path) -> None:
    trace = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=opaque",
    }
    pol = policy(tmp_path, budget_for(1))
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        assert (await post(session, stack, chat(), **trace)).status == 200
    assert {k: upstream_headers(stack)[0][k] for k in trace} == trace


async def test_one_json_log_line_per_call_without_the_provider_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pol = policy(tmp_path, budget_for(1))
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        await post(session, stack, chat(), **{"X-Request-Id": "r-1"})
        await post(session, stack, chat(), **{"X-Request-Id": "r-2"})
    lines = call_lines(caplog)
    assert [(x["request_id"], x["decision"], x["status"]) for x in lines] == [
        ("r-1", "ALLOW", 200),
        ("r-2", "DENY", 402),
    ]
    allowed = lines[0]
    billed = stack.fake.billed[0]
    assert allowed["actual"]["USD"] == mini_cost(billed.prompt_tokens, billed.completion_tokens)
    assert (allowed["tenant"], allowed["scope"]) == ("alpha", "tenant=alpha")
    assert (allowed["model"], allowed["sent"], allowed["rule"]) == ("gpt-4o-mini",) * 2 + (None,)
    assert allowed["estimate"]["USD"] >= allowed["actual"]["USD"]
    assert allowed["latency_ms"] >= 0
    assert lines[1]["would_be"] == "DENY budget_exceeded" and lines[1]["actual"] is None
    assert stack.fake.settings.api_key not in caplog.text


async def test_streamed_call_is_logged_once_with_its_charge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pol = policy(tmp_path, budget_for(1))
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        response = await post(session, stack, chat(stream=True), **{"X-Request-Id": "s-1"})
        assert response.headers["X-Request-Id"] == "s-1"
        samples = await scrape(session, stack)
    lines = call_lines(caplog)
    assert len(lines) == 1 and lines[0]["status"] == 200 and lines[0]["actual"]["USD"] > 0
    assert value(samples, "cycles_upstream_seconds_count") == 1


async def test_a_tenant_key_in_a_logged_field_never_reaches_the_running_proxy_s_log(
    tmp_path: Path, redis_url: str
) -> None:
    """A client that pastes its `ck-` key as its request id and run id has them logged in its
    call line; the redaction filter on the proxy's log handler scrubs both."""
    path = tmp_path / "policy.yaml"
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    path.write_text(path.read_text().replace("identity: header", "identity: api_key"))
    fake = FakeUpstream()
    args = ("--log-format", "json")
    async with proxy_in_front_of(fake, path, redis_url, 0, *args) as (url, proc):
        store = RedisKeyStore(redis_url)
        try:
            key, _ = await store.create("alpha")
        finally:
            await store.close()
        headers = {"Authorization": f"Bearer {key}", "X-Request-Id": key, "X-Cycles-Run": key}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/v1/chat/completions", json=chat(), headers=headers) as r,
        ):
            assert r.status == 200
        await eventually(lambda: call_lines_in(printed(proc)), "the proxy logging its call line")
        text = printed(proc)
    calls = call_lines_in(text)
    assert key not in text and key.lower() not in text
    assert [(c["request_id"], c["scope"]) for c in calls] == [
        (REDACTED, f"tenant=alpha/run={REDACTED}")
    ]
    stores = open_store(redis_url, ReservationSettings())
    ledger = stores.ledger
    try:
        [row] = await ledger.balances("alpha")
    finally:
        await stores.close()
    assert (row.spent, row.reserved) == (mini_cost(chat_prompt_tokens(chat()), 100), 0)


def call_lines_in(log: str) -> list[dict[str, Any]]:
    """The call lines of a proxy's JSON log."""
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "call"]


def test_json_log_format_merges_call_lines_and_still_redacts() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    key = "sk-live-abcdefghijklmnop"
    call = logging.LogRecord(
        "cycles.calls", logging.INFO, __file__, 1, '{"event":"call"}', (), None
    )
    leak = logging.LogRecord("x", logging.WARNING, __file__, 1, "key %s", (key,), None)
    for record in (call, leak):
        assert handler.filter(record)
    merged = orjson.loads(handler.format(call))
    assert (merged["event"], merged["logger"], merged["level"]) == ("call", "cycles.calls", "INFO")
    text = handler.format(leak)
    assert key not in text and orjson.loads(text)["message"] == "key [REDACTED]"


def test_a_record_logged_with_exc_info_false_is_written_not_a_crash() -> None:
    """uvloop's default exception handler logs with `exc_info=False` (an unclosed session at
    exit, say): the filter wrote that as a traceback of its own instead of the line (issue 16).
    A real exception is still written, redacted."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    record = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Unclosed", (), False)
    assert handler.filter(record)
    assert handler.format(record) == "Unclosed" and not record.exc_text
    try:
        raise RuntimeError("token sk-live-abcdefghijklmnop")
    except RuntimeError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert handler.filter(failed)
    assert "RuntimeError: token [REDACTED]" in handler.format(failed)


async def test_ledger_outage_under_fail_open_counts_an_error_and_no_spend(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pol = dataclasses.replace(
        policy(tmp_path, "tenant: {limit: 50, period: month}"), fail_mode="open"
    )
    dead_store = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        local_stack(pol, store=dead_store, sweep_every=None) as stack,
        aiohttp.ClientSession() as session,
    ):
        assert (await post(session, stack, chat())).status == 200
        samples = await scrape(session, stack)
    assert value(samples, "cycles_ledger_errors_total", op="reserve") == 1
    assert value(samples, "cycles_committed_units_total") == 0
    assert value(samples, "cycles_requests_total", decision="ALLOW", status="200") == 1
    (line,) = call_lines(caplog)
    assert line["would_be"] == "UNBUDGETED" and line["actual"]["USD"] > 0


async def test_a_metrics_listener_serves_only_metrics(tmp_path: Path, redis_url: str) -> None:
    """--metrics-listen: what Prometheus scrapes when the proxy port is loopback only (a
    sidecar); it counts the proxy's calls and serves nothing else."""
    policy(tmp_path, "tenant: {limit: 50, period: month}")
    fake = FakeUpstream()
    async with (
        proxy_in_front_of(
            fake, tmp_path / "policy.yaml", redis_url, 0, "--metrics-listen", "127.0.0.1:0"
        ) as (url, proc),
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            url + "/v1/chat/completions", json=chat(), headers={"X-Cycles-Tenant": "alpha"}
        ) as r:
            assert r.status == 200
        metrics_url = listening(proc)["metrics"]
        assert metrics_url is not None and metrics_url != url
        async with session.get(metrics_url + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
        async with session.get(metrics_url + "/v1/models") as r:
            assert r.status == 404
    families = {f.name: f for f in text_string_to_metric_families(text)}
    allowed = [
        s
        for s in families["cycles_requests"].samples
        if s.labels.get("decision") == "ALLOW" and s.name.endswith("_total")
    ]
    assert sum(s.value for s in allowed) == 1


secretish = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "Authorization: Bearer ",
                "authorization=",
                "'api-key': '",
                "X-API-KEY:",
                "bearer ",
                "sk-",
                "ck-",
                "Sk-",
                "redis://user:",
                "rediss+cluster://:",
                "@host:6379",
                "abcdefghijkl",
                " ",
                "'",
                '"',
            ]
        ),
        st.text(max_size=8),
    ),
    max_size=12,
).map("".join)


@given(secretish)
def test_the_quick_check_never_skips_a_line_a_pattern_would_change(text: str) -> None:
    """redact() returns early when none of its markers occurs; whenever a pattern would
    rewrite the line, a marker is there."""
    full = text
    for pattern, replacement in _PATTERNS:
        full = pattern.sub(replacement, full)
    assert redact(text) == full
