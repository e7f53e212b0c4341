"""OpenTelemetry: with an OTLP endpoint set, each budgeted call's span (GenAI conventions, the
client's traceparent as its parent, reserve/upstream/settle children) and the GenAI client
metrics reach an OTLP/HTTP receiver; with none set, no OpenTelemetry module is even loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otel_support import Receiver, attributes, receiving
from prices_support import HEADERS, prices_policy
from support import chat_prompt_tokens, every_row, line, mini_cost, policy

import proxy.gateway
from proxy.core.errors import SettingsError
from proxy.gateway import telemetry
from proxy.testing.local import local_stack

MESSAGES = [{"role": "user", "content": "Write a haiku about budgets."}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


def headers(traceparent: str | None = TRACEPARENT) -> dict[str, str]:
    sent = {"X-Cycles-Tenant": "alpha", "X-Cycles-Run": "r1"}
    return sent | ({"traceparent": traceparent} if traceparent else {})


async def chat(url: str, max_tokens: int, traceparent: str | None = TRACEPARENT) -> Any:
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="unused", default_headers=headers(traceparent), max_retries=0
    ) as client:
        return await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=max_tokens,  # type: ignore[arg-type]
        )


async def test_call_span_continues_the_client_trace_with_genai_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with receiving(monkeypatch) as received, local_stack(pol, store=store_url) as stack:
        completion = await chat(stack.url, 20)
        spent = (await line(stack.ledger, "alpha", "tenant")).spent
        upstream_headers = stack.fake.requests[-1][1]
    # The stack has stopped: its providers flushed on the way out.
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert spent == mini_cost(chat_prompt_tokens(body), 20)
    call = received.named("chat gpt-4o-mini")
    assert (call.trace_id.hex(), call.parent_span_id.hex()) == (TRACE_ID, CLIENT_SPAN)
    assert call.kind == Span.SPAN_KIND_CLIENT
    said = attributes(call.attributes)
    assert completion.usage is not None
    assert said["gen_ai.operation.name"] == "chat"
    assert said["gen_ai.provider.name"] == "openai"
    assert said["gen_ai.request.model"] == said["gen_ai.response.model"] == "gpt-4o-mini"
    assert said["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert said["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens == 20
    assert said["cycles.tenant"] == "alpha"
    assert said["cycles.decision"] == "ALLOW"
    assert said["cycles.cost.usd"] == spent
    assert said["cycles.reserved.usd"] >= spent
    assert said["http.response.status_code"] == 200
    names = ("cycles.reserve", "cycles.upstream", "cycles.settle")
    children = {name: received.named(name) for name in names}
    for child in children.values():
        assert child.trace_id == call.trace_id
        assert child.parent_span_id == call.span_id
        assert call.start_time_unix_nano <= child.start_time_unix_nano
        assert child.start_time_unix_nano <= child.end_time_unix_nano <= call.end_time_unix_nano
    reserve, upstream, settle = children.values()
    assert reserve.end_time_unix_nano <= upstream.start_time_unix_nano
    assert upstream.end_time_unix_nano <= settle.start_time_unix_nano
    # The provider is sent the upstream span's context, not the client's.
    assert upstream_headers["traceparent"] == f"00-{TRACE_ID}-{upstream.span_id.hex()}-01"
    assert received.resources[0]["service.name"] == "budgets"
    assert received.resources[0]["service.instance.id"]


async def test_denied_call_span_has_an_error_status_and_the_deny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = policy(tmp_path, "run: {limit: 0.00000001}")
    async with receiving(monkeypatch) as received:
        async with local_stack(pol) as stack:
            with pytest.raises(openai.APIStatusError) as raised:
                await chat(stack.url, 20)
            rows = await every_row(stack.ledger, "alpha")
        assert stack.fake.calls == 0
    assert raised.value.status_code == 402
    assert all((row.spent, row.reserved) == (0, 0) for row in rows)
    call = received.named("chat gpt-4o-mini")
    assert call.status.code == Status.STATUS_CODE_ERROR
    denial = raised.value.body
    assert isinstance(denial, dict) and call.status.message == denial["message"]
    said = attributes(call.attributes)
    assert said["cycles.decision"] == "DENY"
    assert said["error.type"] == "budget_exceeded"
    assert said["cycles.remaining"] == 1
    assert said["http.response.status_code"] == 402
    assert received.named("cycles.reserve").parent_span_id == call.span_id
    assert [s.name for s in received.spans if s.name in ("cycles.upstream", "cycles.settle")] == []


async def test_call_without_traceparent_starts_a_trace_the_provider_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with receiving(monkeypatch) as received, local_stack(pol) as stack:
        await chat(stack.url, 5, traceparent=None)
        upstream_headers = stack.fake.requests[-1][1]
    call, upstream = received.named("chat gpt-4o-mini"), received.named("cycles.upstream")
    assert call.parent_span_id == b""
    assert upstream.trace_id == call.trace_id
    trace_id, span_id = call.trace_id.hex(), upstream.span_id.hex()
    version, *ids, flags = upstream_headers["traceparent"].split("-")
    assert (version, ids) == ("00", [trace_id, span_id])
    assert int(flags, 16) & 1, "sampled"


def metric(received: Receiver, name: str) -> Metric:
    found = [m for m in received.metrics if m.name == name]
    assert found, f"{name}: {[m.name for m in received.metrics]}"
    return found[-1]


async def test_genai_client_metrics_count_the_tokens_billed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with receiving(monkeypatch) as received, local_stack(pol) as stack:
        completion = await chat(stack.url, 7)
    assert completion.usage is not None
    tokens = metric(received, "gen_ai.client.token.usage")
    assert tokens.unit == "{token}"
    sums = {
        attributes(point.attributes)["gen_ai.token.type"]: point.sum
        for point in tokens.histogram.data_points
    }
    assert sums == {"input": completion.usage.prompt_tokens, "output": 7}
    point = tokens.histogram.data_points[0]
    assert list(point.explicit_bounds)[:3] == [1, 4, 16]
    said = attributes(point.attributes)
    assert said["gen_ai.request.model"] == "gpt-4o-mini"
    assert said["gen_ai.provider.name"] == "openai"
    duration = metric(received, "gen_ai.client.operation.duration")
    assert duration.unit == "s"
    assert [p.count for p in duration.histogram.data_points] == [1]


OURS = ("opentelemetry.exporter", "opentelemetry.sdk.trace", "proxy.gateway.tracing")
"""What the proxy's tracing loads. (redis-py loads parts of the metrics SDK itself, when it is
installed, whatever the proxy does.)"""


def loaded(env: dict[str, str]) -> str:
    """The tracing modules loaded and the OpenTelemetry threads running while a proxy app
    serves, in a fresh interpreter with `env`."""
    script = (
        "import asyncio, sys, threading\n"
        "from pathlib import Path\n"
        "from proxy.app import AppConfig, build_app\n"
        "from proxy.policy import load_policy\n"
        "from proxy.testing.local import serving\n"
        "async def main():\n"
        "    app = build_app(AppConfig(load_policy(Path(sys.argv[1]))))\n"
        "    async with serving(app):\n"
        "        threads = [t.name for t in threading.enumerate() if 'Otel' in t.name]\n"
        f"    modules = [m for m in sys.modules if m.startswith({OURS!r})]\n"
        "    print(sorted(modules + threads))\n"
        "asyncio.run(main())\n"
    )
    example = Path(__file__).parents[2] / "proxy" / "policy" / "example.yaml"
    done = subprocess.run(
        [sys.executable, "-c", script, str(example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_off_by_default_nothing_of_opentelemetry_is_loaded_or_run() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    assert loaded(env) == "[]"
    on = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    on["OTEL_METRICS_EXPORTER"] = "none"
    assert "proxy.gateway.tracing" in loaded(on)
    assert loaded(on | {"OTEL_SDK_DISABLED": "true"}) == "[]"


def test_enabled_by_any_otlp_endpoint_unless_disabled() -> None:
    assert not telemetry.enabled({})
    assert not telemetry.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    for name in telemetry.ENDPOINTS:
        assert telemetry.enabled({name: "http://collector:4318"})
        assert not telemetry.enabled({name: "http://c:4318", "OTEL_SDK_DISABLED": "True"})


def test_an_endpoint_without_the_packages_is_refused_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the OpenTelemetry packages were not installed: the module cannot be imported.
    monkeypatch.setitem(sys.modules, "proxy.gateway.tracing", None)
    monkeypatch.delattr(proxy.gateway, "tracing", raising=False)
    app = web.Application()
    with pytest.raises(SettingsError, match=r"cycles-proxy\[otel\]"):
        telemetry.add_to(app, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not app.cleanup_ctx


async def test_a_call_refused_before_any_decision_is_an_error_span_with_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with receiving(monkeypatch) as received, local_stack(pol) as stack:
        async with aiohttp.ClientSession() as session:
            answer = await session.post(
                stack.url + "/v1/chat/completions", data=b"{not json", headers=headers()
            )
            assert answer.status == 400
        rows = await every_row(stack.ledger, "alpha")
    assert all((row.spent, row.reserved) == (0, 0) for row in rows)
    call = received.named("chat")
    assert (call.trace_id.hex(), call.parent_span_id.hex()) == (TRACE_ID, CLIENT_SPAN)
    assert call.status.code == Status.STATUS_CODE_ERROR
    said = attributes(call.attributes)
    assert (said["http.response.status_code"], said["gen_ai.operation.name"]) == (400, "chat")
    assert "cycles.decision" not in said
    assert len(received.spans) == 1


async def test_a_stream_span_has_its_usage_and_the_upstream_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}")
    async with (
        receiving(monkeypatch) as received,
        local_stack(pol) as stack,
        openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=headers()
        ) as client,
    ):
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=12,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        spent = (await line(stack.ledger, "alpha", "tenant")).spent
    usage = chunks[-1].usage
    assert usage is not None
    said = attributes(received.named("chat gpt-4o-mini").attributes)
    assert (said["gen_ai.usage.input_tokens"], said["gen_ai.usage.output_tokens"]) == (
        usage.prompt_tokens,
        12,
    )
    assert said["cycles.cost.usd"] == spent
    upstream = received.named("cycles.upstream")
    (first_byte,) = upstream.events
    assert first_byte.name == "first_byte"
    assert upstream.start_time_unix_nano <= first_byte.time_unix_nano <= upstream.end_time_unix_nano


async def test_a_messages_call_is_anthropic_chat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = prices_policy(tmp_path)
    async with (
        receiving(monkeypatch) as received,
        local_stack(pol) as stack,
        anthropic.AsyncAnthropic(
            base_url=stack.url, api_key="unused", default_headers=HEADERS, max_retries=0
        ) as sdk,
    ):
        message = await sdk.messages.create(
            model="claude-sonnet-4",
            max_tokens=9,
            messages=[{"role": "user", "content": "Name a budget."}],
        )
    said = attributes(received.named("chat claude-sonnet-4").attributes)
    assert (said["gen_ai.operation.name"], said["gen_ai.provider.name"]) == ("chat", "anthropic")
    assert said["gen_ai.usage.output_tokens"] == message.usage.output_tokens == 9
