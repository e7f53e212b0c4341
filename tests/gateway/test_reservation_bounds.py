"""The reservation is an upper bound on what the provider bills, on every API shape.

The fake provider counts prompts by its own rules (proxy/testing/fake_tokens.py: the providers'
published rules, and documented stand-ins where none is published) and generates the whole
completion limit. A budget one unit below what it bills for a call must refuse that call: a proxy
whose estimate left out part of the prompt (`instructions`, `system`, a message's overhead, Claude's
tokenizer factor, Claude's tool-use system prompt) or some of the `n` choices would reserve less
and let it through. An admitted call is charged exactly what the fake billed. The policy prices
OpenAI cache writes at input, so a reservation holds no write slack (the default write price,
1.25 × input, would cover a token or two left out of an OpenAI estimate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fields_support import billed_cost, shapes_policy
from support import settled, usd

from proxy.testing import fake_tokens
from proxy.testing.fake_upstream import Billed, FakeUpstream
from proxy.testing.local import local_stack

HEADERS = {"X-Cycles-Tenant": "alpha"}
TIGHT = {**HEADERS, "X-Cycles-Workflow": "tight"}
LONG = "Answer as a patient tutor would, one short step at a time, and check each step. " * 120
LIMIT = 30

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat-messages": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "max_tokens": LIMIT,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Count to three."},
                {"role": "assistant", "content": "One, two, three."},
                {"role": "user", "name": "ada", "content": "Again."},
                {"role": "assistant", "content": "One, two, three."},
                {"role": "user", "content": "Slower."},
            ],
        },
    ),
    "chat-n": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "max_tokens": LIMIT,
            "n": 3,
            "messages": [{"role": "user", "content": "Three ways to say hello."}],
        },
    ),
    "responses-instructions": (
        "/v1/responses",
        {
            "model": "gpt-4o-mini",
            "max_output_tokens": LIMIT,
            "instructions": LONG,
            "input": "Count to three.",
        },
    ),
    "responses-items": (
        "/v1/responses",
        {
            "model": "gpt-4o-mini",
            "max_output_tokens": LIMIT,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": LONG}]},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
                {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "three steps"},
                {"role": "user", "content": "Go on."},
            ],
        },
    ),
    "messages-system-string": (
        "/v1/messages",
        {
            "model": "claude-sonnet-4",
            "max_tokens": LIMIT,
            "system": LONG,
            "messages": [{"role": "user", "content": "Count to three."}],
        },
    ),
    "messages-system-blocks": (
        "/v1/messages",
        {
            "model": "claude-sonnet-4",
            "max_tokens": LIMIT,
            "system": [{"type": "text", "text": LONG}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Count."}]}],
        },
    ),
    "messages-tools": (
        "/v1/messages",
        {
            "model": "claude-sonnet-4",
            "max_tokens": LIMIT,
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
        },
    ),
}
ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
}


def bill(path: str, body: dict[str, Any]) -> Billed:
    """What the fake will bill for `body`: its own prompt count and the whole limit for each
    of the `n` choices."""
    endpoint = ENDPOINTS[path]
    prompt = fake_tokens.prompt_tokens(endpoint, body)
    return Billed(endpoint, body["model"], prompt, LIMIT * body.get("n", 1))


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, bytes]:
    async with http.post(url, json=body, headers=headers) as r:
        return r.status, await r.read()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("case", CASES)
async def test_budget_one_unit_below_the_bill_is_refused_and_the_bill_is_charged(
    tmp_path: Path, store_url: str, case: str, stream: bool
) -> None:
    path, body = CASES[case]
    body = {**body, "stream": True} if stream else body
    expected = bill(path, body)
    cost = billed_cost(expected)
    budgets = (
        "tenant: {limit: 50, period: month}\n"
        f"      workflow: {{limit: {usd(cost - 1)}, period: month}}"
    )
    fake = FakeUpstream()
    # Cache writes priced at input: an OpenAI prompt is then reserved at the price it is billed
    # at (not at the default write price, whose slack would hide a token left out).
    exact = shapes_policy(tmp_path, budgets, writes_at_input=True)
    async with (
        local_stack(exact, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        status, answer = await post(http, stack.url + path, body, TIGHT)
        assert status == 402, answer
        assert b"budget_exceeded" in answer and b"workflow" in answer
        assert fake.calls == 0
        assert all(r.spent == r.reserved == 0 for r in await stack.ledger.balances("alpha"))

        status, answer = await post(http, stack.url + path, body, HEADERS)
        assert status == 200, answer
        assert fake.billed == [expected]
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (cost, 0)


def test_the_cases_are_large_enough_to_show_a_forgotten_part() -> None:
    """Leaving out `instructions` or `system` would drop the bill by far more than one unit."""
    for name in ("responses-instructions", "messages-system-string", "messages-system-blocks"):
        path, body = CASES[name]
        without = {k: v for k, v in body.items() if k not in ("instructions", "system")}
        assert billed_cost(bill(path, body)) - billed_cost(bill(path, without)) > 1000, name
