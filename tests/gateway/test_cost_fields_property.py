"""Issue 13, acceptance 2: whatever mix of cost-bearing fields a request carries, on chat,
completions, embeddings, the Responses API and Anthropic's Messages API, and on both stores
(memory:// and a real redis-server), the call is either

- refused with a 4xx the proxy answers itself (OpenAI's error shape, Anthropic's on
  /v1/messages), having reserved nothing: the ledger did not move and the provider saw nothing;
- or forwarded, and then billed ≤ charged ≤ reserved, "billed" being what the independent fake
  provider billed (fake.billed), priced with the tests' own formula (tests/prices_support.py),
  "reserved" what the tenant's line held while the call was at the provider. A provider that
  refused the call before any output billed nothing, and the call was charged nothing.

The bodies (tests/openai_bodies_support.py, claude_bodies_support.py, on the values and policy
of cost_fields_support.py) mix limits (0, negative, not integers, conflicting pairs), n and
best_of, completions batches of strings and token lists, tools with hosted tools and
max_tool_calls, images, audio, files and documents, service tiers, reasoning settings, Anthropic
system prompts, server and client tools, thinking and cache breakpoints (at any depth of a
block), and long prompts with and without the long-context beta. The fake bills hosted tool
calls and the input they add, documents, tiers, cache reads and writes (OpenAI's too, on models
that price them and on models that leave them to the default, and Anthropic's reported with a
split that leaves some out), and audio in and out of long prompts at the audio prices, as the
providers do, within what the policy declares.

The default run is short and seeded (fuzz_support.FIXED_SEED); a failure names its seed. Longer:

    CYCLES_FUZZ_SEED=random pytest -q tests/gateway/test_cost_fields_property.py
    CYCLES_FUZZ_EXAMPLES=2000 pytest -q tests/gateway/test_cost_fields_property.py
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from claude_bodies_support import messages_bodies, with_beta
from cost_fields_support import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    ENDPOINTS,
    MESSAGES,
    RESPONSES,
    UNPRICED_WRITES,
    Request,
    property_policy,
    provider_moods,
)
from fuzz_support import (
    EXAMPLES,
    Answer,
    Driver,
    Outcomes,
    Sums,
    Unhandled,
    Watched,
    catching_unhandled,
    drive,
    fuzz,
    ledger_lines,
    run_seed,
    run_seeded,
    send,
)
from hypothesis import given
from hypothesis import strategies as st
from openai_bodies_support import chat_bodies, completion_bodies, embedding_bodies, responses_bodies
from prices_support import billed_cost

from proxy.testing.fake_openai import Billed

pytestmark = pytest.mark.timeout(0 if EXAMPLES else 600)
DIMENSIONS = {"stream", "web_search", "cache-5m", "cache-1h", "long-context", "documents"}
DIMENSIONS |= {"nested-cache", "client-tool", "openai-cache-write", "unpriced-cache-write"}
DIMENSIONS |= {"long-context-media", "tool-input"}
"""What a run of at least the default size must have seen billed, each at least once, on each
store (and some tier above or below the standard one). "tool-input": a Responses call that
only reserving its hosted tools' input kept within its reservation (_tool_input_needed)."""
QUICK = 600
"""Examples per store in the default run (each sends one to three calls)."""

requests = st.one_of(
    st.builds(Request, st.just(CHAT), chat_bodies, st.just({})),
    st.builds(Request, st.just(COMPLETIONS), completion_bodies, st.just({})),
    st.builds(Request, st.just(EMBEDDINGS), embedding_bodies, st.just({})),
    st.builds(Request, st.just(RESPONSES), responses_bodies, st.just({})),
    messages_bodies.flatmap(with_beta),
    messages_bodies.flatmap(with_beta),
)
"""Every endpoint, Anthropic's twice (it has the most cost-bearing fields)."""


@pytest.fixture
def unhandled() -> Iterator[Unhandled]:
    yield from catching_unhandled()


@pytest.fixture
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    return run_seed(request.config.getoption("hypothesis_seed", None))


def test_every_mix_of_cost_bearing_fields_is_refused_unreserved_or_billed_within_its_charge(
    store_url: str, tmp_path: Path, unhandled: Unhandled, fuzz_seed: int
) -> None:
    outcomes = Outcomes()
    fake = Watched()

    def check(driver: Driver) -> None:
        @fuzz(quick=QUICK, seed_value=fuzz_seed)
        @given(mood=provider_moods, batch=st.lists(requests, min_size=1, max_size=3))
        def one(mood: dict[str, object], batch: list[Request]) -> None:
            fake.settings = dataclasses.replace(fake.settings, **mood, long_context_above=2000)
            driver.tenant = driver.fresh_tenant()
            for call in batch:
                outcomes.add(driver.run(_check(driver, call, unhandled)))

        run_seeded(f"cost-bearing fields on {store_url}", fuzz_seed, one)

    drive(property_policy(tmp_path), store_url, fake, check)
    forwarded = outcomes.share(lambda label: label.startswith("billed"))
    refused = outcomes.share(lambda label: label.startswith("refused"))
    report = outcomes.report(
        f"cost-bearing fields on {store_url}", forwarded=forwarded, refused=refused
    )
    print(report)
    assert forwarded >= 0.3 and refused >= 0.1, report
    billed = [label.split() for label in outcomes.counts if label.startswith("billed")]
    assert {words[1] for words in billed} == set(ENDPOINTS.values()), report
    shown = {word for words in billed for word in words[3:]}
    if (EXAMPLES or QUICK) >= QUICK:
        assert shown >= DIMENSIONS, f"never billed: {DIMENSIONS - shown}\n{report}"
        assert shown & {"priority", "flex"}, report


async def _check(driver: Driver, call: Request, unhandled: Unhandled) -> str:
    tenant = driver.tenant
    before = await ledger_lines(driver.stack, tenant)
    asked, billed = len(driver.fake.requests), len(driver.fake.billed)
    driver.at_upstream.clear()
    unhandled.records.clear()
    headers = {"X-Cycles-Tenant": tenant, **call.headers}
    answer = await send(driver, call.path, orjson.dumps(call.body), headers)
    await driver.settled()
    assert not unhandled.records, [r.getMessage() for r in unhandled.records]
    after = await ledger_lines(driver.stack, tenant)
    assert all(line.reserved == 0 for line in after.values()), after
    if len(driver.fake.requests) == asked:
        # Refused by the proxy: a 4xx in the API's shape, and nothing reserved or charged.
        assert 400 <= answer.status < 500, (answer.status, answer.body, call)
        assert after == before, (answer.status, answer.body, call)
        return f"refused {call.endpoint} {answer.status} {_reason(answer, call)}"
    line = ("tenant", tenant, "USD")
    charged = after.get(line, Sums()).spent - before.get(line, Sums()).spent
    bills = driver.fake.billed[billed:]
    if not bills:
        # The provider refused it before any output: released.
        assert answer.status >= 400 and charged == 0, (answer.status, answer.body, call)
        return f"provider-refused {call.endpoint} {answer.status}"
    (during,) = driver.at_upstream
    reserved = during[line].reserved
    cost = sum(billed_cost(bill) for bill in bills)
    assert cost <= charged <= reserved, (
        f"billed {cost}, charged {charged}, reserved {reserved}: {bills} for {call}"
    )
    unreported = call.stream and not driver.fake.settings.send_usage
    found = _dimensions(bills, unreported) + _tool_input_needed(call, bills, reserved - cost)
    shown = " ".join(["stream"] * call.stream + found + _asked(call))
    return f"billed {call.endpoint} {answer.status} {shown}".rstrip()


def _dimensions(bills: list[Billed], unreported: bool) -> list[str]:
    """What the provider billed beyond plain tokens, for the report; `unreported`: in a stream
    that carried no usage report."""
    found = set()
    for bill in bills:
        found |= {tool for tool, n in bill.tool_calls.items() if n}
        if bill.endpoint != "messages" and bill.cache_write_tokens:
            found.add("openai-cache-write")
            if unreported and bill.endpoint == "chat":
                found.add("unreported-write")  # rare: test_openai_cache_writes.py has it
            if bill.model in UNPRICED_WRITES:
                found.add("unpriced-cache-write")
        elif bill.cache_write_tokens or bill.cache_write_1h_tokens:
            found.add("cache-1h" if bill.cache_write_1h_tokens else "cache-5m")
        if bill.long_context:
            found.add("long-context")
            if bill.audio_prompt_tokens or bill.audio_completion_tokens:
                found.add("long-context-media")
        if bill.documents:
            found.add("documents")
        if bill.service_tier != "default":
            found.add(bill.service_tier)
    return sorted(found)


def _tool_input_needed(call: Request, bills: list[Billed], spare: int) -> list[str]:
    """The label "tool-input" when a Responses call's hosted tools added input that cost more
    than its reservation had to `spare`: reserved without that input (max_tool_calls of them),
    the call would have been billed above its reservation."""
    if call.endpoint != "responses":
        return []  # Anthropic's server tools are bounded each by its own max_uses
    added = sum(billed_cost(bill) - billed_cost(_without_tool_input(bill)) for bill in bills)
    return ["tool-input"] if spare < added else []


def _without_tool_input(bill: Billed) -> Billed:
    """`bill` as if its hosted tool calls had added no input: their tokens come off the
    prompt's uncached part first, then off what it wrote to the cache (the fake may write a
    whole prompt), then off what it read from it."""
    left = bill.tool_input_tokens
    fresh = bill.prompt_tokens - bill.cached_tokens - bill.cache_write_tokens
    fresh -= bill.cache_write_1h_tokens + bill.audio_prompt_tokens
    left -= min(left, fresh)
    written = min(left, bill.cache_write_tokens)
    return dataclasses.replace(
        bill,
        prompt_tokens=bill.prompt_tokens - bill.tool_input_tokens,
        cache_write_tokens=bill.cache_write_tokens - written,
        cached_tokens=bill.cached_tokens - (left - written),
        tool_input_tokens=0,
    )


def _asked(call: Request) -> list[str]:
    """What a Messages request turned on that its bill does not name: a breakpoint nested
    inside a block, an Anthropic client tool."""
    if call.path != MESSAGES:
        return []
    found = []
    messages = call.body.get("messages")
    turns = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    blocks = [b for m in turns if isinstance(m.get("content"), list) for b in m["content"]]
    if any(_breakpoint_inside(block, top=True) for block in blocks):
        found.append("nested-cache")
    tools = call.body.get("tools")
    kinds = (
        [str(t.get("type")) for t in tools if isinstance(t, dict)]
        if isinstance(tools, list)
        else []
    )
    if any(kind.startswith(("bash_", "text_editor_", "computer_")) for kind in kinds):
        found.append("client-tool")
    return found


def _breakpoint_inside(value: object, top: bool = False) -> bool:
    """A `cache_control` set somewhere below `value` (its own, when `top`, does not count)."""
    if isinstance(value, list):
        return any(_breakpoint_inside(item) for item in value)
    if not isinstance(value, dict):
        return False
    if not top and value.get("cache_control") is not None:
        return True
    return any(_breakpoint_inside(v) for k, v in value.items() if k != "cache_control")


def _reason(answer: Answer, call: Request) -> str:
    """The error's code, read from the API's own shape (Anthropic's on /v1/messages)."""
    body = orjson.loads(answer.body)
    if call.path == MESSAGES:
        assert body["type"] == "error", body
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"], body
    return str(error.get("code") or error["type"])
