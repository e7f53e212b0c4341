"""Degrade before denying, and plan quotas, decided in the same atomic reserve (issue 4)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from hooks_support import quota_counters
from support import (
    POLICY,
    UNITS,
    chat,
    chat_prompt_tokens,
    commands_seen,
    cost,
    line,
    monitor,
    policy,
    usd,
)

from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

Answer = tuple[int, dict[str, str], dict[str, Any]]


async def post(
    session: aiohttp.ClientSession, stack: Stack, body: dict[str, Any], **scope: str
) -> Answer:
    headers = {"X-Cycles-" + k.capitalize(): v for k, v in scope.items()}
    async with session.post(f"{stack.url}/v1/chat/completions", json=body, headers=headers) as r:
        raw = await r.read()
        answer = orjson.loads(raw) if r.content_type == "application/json" else {"stream": raw}
        return r.status, dict(r.headers), answer


def sent_body(stack: Stack) -> dict[str, Any]:
    return stack.fake.requests[-1][2]


def four_o(max_tokens: int = 100, content: str = "hi") -> dict[str, Any]:
    return chat(content, max_tokens=max_tokens) | {"model": "gpt-4o"}


async def test_run_low_on_budget_is_served_by_the_cheaper_model(
    tmp_path: Path, store_url: str
) -> None:
    body = four_o()
    prompt = chat_prompt_tokens(body)
    first = cost("gpt-4o", prompt, 100)
    limit = first * 100 // 85  # after the first call, the run has 15 % left
    pol = policy(
        tmp_path,
        f"run: {{limit: {usd(limit)}}}",
        plan="""
        degrade:
          - {when: {scope: run, remaining_below: "20%"}, set: {model: gpt-4o-mini}}
        """,
    )
    async with local_stack(pol, store=store_url) as stack:
        headers = {"X-Cycles-Tenant": "alpha", "X-Cycles-Run": "r1"}
        async with openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="x", default_headers=headers
        ) as client:
            one = await client.chat.completions.with_raw_response.create(**body)
            assert one.headers["x-cycles-decision"] == "ALLOW"
            two = await client.chat.completions.with_raw_response.create(**body)
        assert two.headers["x-cycles-decision"] == "ALLOW_WITH_CAPS"
        assert two.headers["x-cycles-caps"] == "model=gpt-4o-mini"
        assert two.parse().choices[0].message.content == " hello" * 100
        assert sent_body(stack)["model"] == "gpt-4o-mini"
        run = await line(stack.ledger, "alpha", "run", "r1")
        assert (run.spent, run.reserved) == (first + cost("gpt-4o-mini", prompt, 100), 0)


async def test_fit_caps_the_completion_to_what_remains(tmp_path: Path, store_url: str) -> None:
    body = chat(max_tokens=4000)
    prompt = chat_prompt_tokens(body)
    limit = cost("gpt-4o-mini", prompt, 1234) + 37
    pol = policy(
        tmp_path,
        f"tenant: {{limit: {usd(limit)}, period: month}}",
        plan="""
        degrade:
          - {when: {does_not_fit: true}, set: {fit: {min_tokens: 50}}}
        """,
    )
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        status, headers, _ = await post(session, stack, body, tenant="alpha")
        prompt_units = -(-prompt * int(0.15 * UNITS) // 10**6)
        expected = (limit - prompt_units) * 10**6 // int(0.60 * UNITS)
        assert status == 200
        assert sent_body(stack)["max_tokens"] == expected
        assert headers["X-Cycles-Caps"] == f"max_tokens={expected}"
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert tenant.spent == cost("gpt-4o-mini", prompt, expected) <= limit
        # Now fewer than 50 tokens fit: below the floor, the call is denied.
        status, _, error = await post(session, stack, body, tenant="alpha")
        assert status == 402 and error["error"]["type"] == "budget_exceeded"
        assert len(stack.fake.requests) == 1


async def test_model_outside_the_plan_is_403_unless_a_rule_maps_it(tmp_path: Path) -> None:
    quotas = 'quotas: {models: ["gpt-4o-mini"]}'
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}", plan=quotas)
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        status, _, error = await post(session, stack, four_o(), tenant="alpha")
        assert status == 403
        assert error["error"]["type"] == "model_not_allowed"
        assert "gpt-4o-mini" in error["error"]["message"]
        assert stack.fake.requests == []
    mapped = policy(
        tmp_path,
        "tenant: {limit: 50, period: month}",
        plan=f"""
        {quotas}
        degrade:
          - {{when: {{model_not_allowed: true}}, set: {{model: gpt-4o-mini}}}}
        """,
    )
    async with local_stack(mapped) as stack, aiohttp.ClientSession() as session:
        status, headers, _ = await post(session, stack, four_o(), tenant="alpha")
        assert status == 200 and headers["X-Cycles-Caps"] == "model=gpt-4o-mini"
        assert sent_body(stack)["model"] == "gpt-4o-mini"


async def test_max_tokens_per_request_caps_and_never_denies(tmp_path: Path, store_url: str) -> None:
    pol = policy(
        tmp_path, "tenant: {limit: 50, period: month}", plan="quotas: {max_tokens_per_request: 64}"
    )
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        body = chat(max_tokens=5000)
        status, headers, _ = await post(session, stack, body, tenant="alpha")
        assert status == 200
        assert headers["X-Cycles-Decision"] == "ALLOW_WITH_CAPS"
        assert headers["X-Cycles-Caps"] == "max_tokens=64"
        assert sent_body(stack)["max_tokens"] == 64
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert tenant.spent == cost("gpt-4o-mini", chat_prompt_tokens(body), 64)


async def test_runs_per_day_admits_n_runs_then_429(tmp_path: Path, store_url: str) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}", plan="quotas: {runs_per_day: 3}")
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        for run in ("r1", "r2", "r3", "r1"):
            assert (await post(session, stack, chat(), tenant="alpha", run=run))[0] == 200
        status, headers, error = await post(session, stack, chat(), tenant="alpha", run="r4")
        assert status == 429
        assert error["error"]["type"] == "quota_exceeded"
        assert error["error"]["code"] == "runs_per_day"
        assert headers["x-should-retry"] == "false"
        assert int(headers["Retry-After"]) > 0
        # A run already counted today goes on.
        assert (await post(session, stack, chat(), tenant="alpha", run="r2"))[0] == 200
        assert len(stack.fake.requests) == 5


async def test_steps_per_run_admits_n_calls_then_429(tmp_path: Path, store_url: str) -> None:
    pol = policy(tmp_path, "tenant: {limit: 50, period: month}", plan="quotas: {steps_per_run: 2}")
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        for _ in range(2):
            assert (await post(session, stack, chat(), tenant="alpha", run="r1"))[0] == 200
        status, headers, error = await post(session, stack, chat(), tenant="alpha", run="r1")
        assert (status, error["error"]["code"]) == (429, "steps_per_run")
        assert headers["x-should-retry"] == "false"
        assert (await post(session, stack, chat(), tenant="alpha", run="r2"))[0] == 200
        tenant = await line(stack.ledger, "alpha", "tenant")
        assert tenant.spent == 3 * cost("gpt-4o-mini", chat_prompt_tokens(chat()), 100)


async def test_requests_per_minute_admits_n_then_429_with_retry_after(
    tmp_path: Path, store_url: str
) -> None:
    pol = policy(
        tmp_path, "tenant: {limit: 50, period: month}", plan="quotas: {requests_per_minute: 4}"
    )
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        for _ in range(4):
            assert (await post(session, stack, chat(), tenant="alpha"))[0] == 200
        status, headers, error = await post(session, stack, chat(), tenant="alpha")
        assert (status, error["error"]["code"]) == (429, "requests_per_minute")
        assert 1 <= int(headers["Retry-After"]) <= 15
        assert "x-should-retry" not in headers  # a short wait: let the SDK retry


async def test_concurrent_requests_never_exceed_the_limit_upstream(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(latency=0.2))
    pol = policy(
        tmp_path, "tenant: {limit: 50, period: month}", plan="quotas: {concurrent_requests: 5}"
    )
    async with (
        local_stack(pol, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as session,
    ):
        answers = await asyncio.gather(
            *(post(session, stack, chat(), tenant="alpha") for _ in range(50))
        )
        statuses = [status for status, _, _ in answers]
        assert fake.peak_in_flight <= 5
        assert statuses.count(200) >= 5
        assert statuses.count(200) + statuses.count(429) == 50
        codes = {a[2]["error"]["code"] for a in answers if a[0] == 429}
        assert codes == {"concurrent_requests"}
        # Everything settled: the slots are free again.
        assert (await post(session, stack, chat(), tenant="alpha"))[0] == 200
        counters = await quota_counters(stack.ledger, "alpha")
        assert counters.get("q|conc|tenant|alpha", 0) == 0


async def test_shadow_names_the_rule_and_quota_but_changes_nothing(tmp_path: Path) -> None:
    pol = policy(
        tmp_path,
        "run: {limit: 0.00000001}",
        mode="shadow",
        plan="""
        quotas: {steps_per_run: 1, max_tokens_per_request: 10}
        degrade:
          - {when: {does_not_fit: true}, set: {model: gpt-4o-mini}}
        """,
    )
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        first = await post(session, stack, four_o(max_tokens=50), tenant="alpha", run="r1")
        assert first[0] == 200
        assert first[1]["X-Cycles-Shadow-Decision"] == "DENY budget run"
        assert sent_body(stack)["model"] == "gpt-4o" and sent_body(stack)["max_tokens"] == 50
        second = await post(session, stack, four_o(max_tokens=50), tenant="alpha", run="r1")
        assert second[0] == 200
        assert second[1]["X-Cycles-Shadow-Decision"] == "DENY quota steps_per_run"


async def test_degrade_and_quotas_cost_no_extra_round_trip(tmp_path: Path, redis_url: str) -> None:
    pol = policy(
        tmp_path,
        "tenant: {limit: 50, period: month}\nrun: {limit: 2}",
        plan="""
        quotas:
          runs_per_day: 100
          steps_per_run: 100
          concurrent_requests: {tenant: 5, agent: 2}
          requests_per_minute: 1000
          tokens_per_minute: 10000000
          max_tokens_per_request: 500
        degrade:
          - {when: {scope: run, remaining_below: "20%"}, set: {model: gpt-4o-mini}}
          - {when: {does_not_fit: true}, set: {fit: {min_tokens: 10}}}
        """,
    )
    async with (
        local_stack(pol, store=redis_url, sweep_every=None) as stack,
        aiohttp.ClientSession() as session,
    ):
        await post(session, stack, four_o(), tenant="alpha", run="warm", agent="a")
        async with monitor(redis_url) as commands:
            for i in range(10):
                body = four_o(max_tokens=1000) | {"stream": i % 2 == 1}
                status, _, _ = await post(
                    session, stack, body, tenant="alpha", run=f"r{i}", agent="a"
                )
                assert status == 200
            seen = await commands_seen(commands, 20)
    # Every command a client sent (the scripts' own commands are tagged "lua" and not counted):
    # one reserve and one settle per call, nothing else.
    assert seen == ["evalsha"] * 20


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ("{when: {scope: run, remaining_below: '20%'}, set: {model: gpt-9}}", "set.model", "gpt-9"),
        (
            "{when: {scope: agent, remaining_below: '20%'}, set: {model: gpt-4o-mini}}",
            "when.scope",
            "no budget",
        ),
        (
            "{when: {scope: team, remaining_below: '20%'}, set: {model: gpt-4o-mini}}",
            "when.scope",
            "unknown level",
        ),
    ],
)
async def test_check_names_the_line_and_field_of_a_bad_degrade_rule(
    tmp_path: Path, rule: str, field: str, words: str
) -> None:
    text = POLICY.format(
        mode="enforce",
        budgets="      run: {limit: 2}",
        extra=f"    degrade:\n      - {rule}",
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line_no = text.splitlines().index(f"      - {rule}") + 1
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "check",
        "--policy",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    message = err.decode()
    assert f"bad.yaml:{line_no}: plans.test.degrade[0].{field}" in message
    assert words in message


async def test_tokens_per_minute_admits_n_calls_worth_then_429(
    tmp_path: Path, store_url: str
) -> None:
    per_call = chat_prompt_tokens(chat()) + 100
    pol = policy(
        tmp_path,
        "tenant: {limit: 50, period: month}",
        plan=f"quotas: {{tokens_per_minute: {3 * per_call}}}",
    )
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as session:
        for _ in range(3):
            assert (await post(session, stack, chat(), tenant="alpha"))[0] == 200
        status, headers, error = await post(session, stack, chat(), tenant="alpha")
        assert (status, error["error"]["type"]) == (429, "quota_exceeded")
        assert error["error"]["code"] == "tokens_per_minute"
        assert 1 <= int(headers["Retry-After"]) <= 21
        assert len(stack.fake.requests) == 3


async def test_a_call_too_large_for_the_ledger_is_400_not_500(tmp_path: Path) -> None:
    pol = policy(
        tmp_path,
        "tenant: {limit: 50, period: month}",
        plan="""
        degrade:
          - {when: {does_not_fit: true}, set: {fit: {min_tokens: 1}}}
        """,
    )
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        body = chat(max_tokens=1) | {"n": 2**40}
        status, _, error = await post(session, stack, body, tenant="alpha")
        assert status == 400 and error["error"]["code"] == "call_too_large"
        assert stack.fake.requests == []
        assert await stack.ledger.balances("alpha") == []
