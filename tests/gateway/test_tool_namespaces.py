"""Responses tools billed by their tokens alone pass (issue 13): a `namespace` (openai-agents'
`tool_namespace` groups function tools under a name) and a `tool_search` the client runs
(`execution: client`, openai-agents' `ToolSearchTool(execution="client")`), and the
`tool_search_call` items such a search answers with are not charged as a hosted tool's fee.
What they hold is still priced: a hosted tool inside a namespace, or among the tools a
`tool_search_output` input item loads, is priced as one in `tools` (refused on a model that
does not price it, before anything is reserved or sent), a search the provider runs is a hosted
tool, and a namespace's tools are checked as `tools` are (each an object with a string type).

The real openai and openai-agents SDKs on both stores; the fake provider is the oracle (it
calls a namespaced function, makes hosted calls of a namespaced tool, and asks the client to run
its tool search): billed <= charged <= reserved, each call charged what the fake billed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import prices_support
import pytest
from fields_support import HEADERS, books, fields_policy, one_call

from proxy.testing.fake_openai import WORD
from proxy.testing.fake_upstream import FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

LOOKUP = {
    "type": "function",
    "name": "lookup",
    "description": "Find a customer.",
    "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
}
SEARCH = {"type": "object", "properties": {"query": {"type": "string"}}}
CLIENT_SEARCH = {"type": "tool_search", "execution": "client", "parameters": SEARCH}


def namespace(*tools: Any) -> dict[str, Any]:
    return {"type": "namespace", "name": "crm", "description": "CRM tools", "tools": list(tools)}


def sdk(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS, max_retries=0
    )


async def test_an_agent_with_a_tool_namespace_and_a_client_tool_search_runs_within_budget(
    tmp_path: Path, store_url: str
) -> None:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIResponsesModel,
        RunConfig,
        Runner,
        ToolSearchTool,
        function_tool,
        tool_namespace,
    )

    called: list[str] = []

    @function_tool
    def lookup_customer(customer_id: str = "42") -> str:
        """Find a customer."""
        called.append(customer_id)
        return "Ada"

    crm = tool_namespace(name="crm", description="CRM tools", tools=[lookup_customer])
    search = ToolSearchTool(execution="client", description="Find tools", parameters=SEARCH)
    async with local_stack(fields_policy(tmp_path), store=store_url) as stack:
        async with sdk(stack) as client:
            agent = Agent(
                name="crm",
                instructions="Answer.",
                model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client),
                model_settings=ModelSettings(max_tokens=5),
                tools=[*crm, search],
            )
            result = await Runner.run(
                agent, "Who is 42?", run_config=RunConfig(tracing_disabled=True)
            )
        sent = [body for _, _, body in stack.fake.requests]
        calls = await books(stack)
    assert [tool["type"] for tool in sent[0]["tools"]] == ["namespace", "tool_search"]
    assert called == ["42"] and result.final_output == WORD * 5  # the namespaced function ran
    assert sent[1]["input"][-1]["type"] == "function_call_output"
    assert len(calls) == 2 and all(c.billed == c.charged <= c.reserved for c in calls), calls


@pytest.mark.parametrize(
    "tools", [[namespace(LOOKUP)], [CLIENT_SEARCH]], ids=["namespace", "client-tool-search"]
)
async def test_tools_billed_by_their_tokens_alone_are_charged_what_was_billed(
    tmp_path: Path, store_url: str, tools: list[Any]
) -> None:
    """The fake asks the client to run its search (a tool_search_call item): no fee."""
    fake = FakeUpstream(FakeSettings(hosted_tool_calls=1))
    async with local_stack(fields_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            answer = await client.responses.create(
                model="gpt-4o-mini", input="Who is 42?", tools=tools, max_output_tokens=5
            )
        await one_call(stack)
    searched = [item for item in answer.output if item.type == "tool_search_call"]
    assert [item.execution for item in searched] == ["client"] * (tools == [CLIENT_SEARCH])


async def test_a_client_tool_search_round_trip_loads_function_tools_within_budget(
    tmp_path: Path, store_url: str
) -> None:
    fake = FakeUpstream(FakeSettings(hosted_tool_calls=1))
    async with local_stack(fields_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            first = await client.responses.create(
                model="gpt-4o-mini", input="Who is 42?", tools=[CLIENT_SEARCH], max_output_tokens=5
            )
            [call] = [item for item in first.output if item.type == "tool_search_call"]
            loaded = {
                "type": "tool_search_output",
                "call_id": call.call_id,
                "execution": "client",
                "status": "completed",
                "tools": [namespace(LOOKUP)],
            }
            given: Any = [
                {"role": "user", "content": "Who is 42?"},
                call.model_dump(exclude_none=True),
                loaded,
            ]
            await client.responses.create(
                model="gpt-4o-mini", input=given, tools=[CLIENT_SEARCH], max_output_tokens=5
            )
        calls = await books(stack)
    assert len(calls) == 2 and all(c.billed == c.charged <= c.reserved for c in calls), calls


WEB_SEARCH = {"type": "web_search"}
REFUSED: dict[str, tuple[list[Any], Any, str, str]] = {
    "hosted-in-a-namespace": ([namespace(LOOKUP, WEB_SEARCH)], "hi", "tools", "'web_search'"),
    "server-tool-search": ([{"type": "tool_search"}], "hi", "tools", "'tool_search'"),
    "hosted-loaded-by-a-search": (
        [CLIENT_SEARCH],
        [{"type": "tool_search_output", "execution": "client", "tools": [WEB_SEARCH]}],
        "tools",
        "'web_search'",
    ),
    "not-an-object-in-a-namespace": (
        [namespace(LOOKUP, "web_search")],
        "hi",
        "tools[0].tools[1]",
        "must be an object",
    ),
    "untyped-in-a-namespace": (
        [namespace({k: v for k, v in LOOKUP.items() if k != "type"})],
        "hi",
        "tools[0].tools[0].type",
        "must be a string",
    ),
    "namespace-without-a-list": (
        [{**namespace(), "tools": WEB_SEARCH}],
        "hi",
        "tools[0].tools",
        "must be an array",
    ),
    "not-an-object-loaded": (
        [CLIENT_SEARCH],
        [{"type": "tool_search_output", "execution": "client", "tools": ["web_search"]}],
        "input[0].tools[0]",
        "must be an object",
    ),
}
"""Tools gpt-4o-mini (which prices no hosted tool) cannot take: what is sent, where the error
points, and what its message says."""


@pytest.mark.parametrize("case", REFUSED)
async def test_what_a_namespace_or_a_search_holds_is_priced_or_refused_before_anything_is_sent(
    tmp_path: Path, store_url: str, case: str
) -> None:
    tools, given, where, said = REFUSED[case]
    fake = FakeUpstream(FakeSettings(hosted_tool_calls=1))
    async with local_stack(fields_policy(tmp_path), store=store_url, fake=fake) as stack:
        async with sdk(stack) as client:
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(
                    model="gpt-4o-mini", input=given, tools=tools, max_output_tokens=5
                )
        balances = await stack.ledger.balances("alpha")
    error: Any = refused.value.body
    assert error["param"] == where and said in error["message"], error
    assert fake.requests == [] and all(r.spent == r.reserved == 0 for r in balances)


LOADING_WEB_SEARCH = [
    {"role": "user", "content": "Search."},
    {
        "type": "tool_search_output",
        "execution": "client",
        "status": "completed",
        "tools": [WEB_SEARCH],
    },
]


@pytest.mark.parametrize(
    ("tools", "given"),
    [([namespace(LOOKUP, WEB_SEARCH)], "Search."), ([CLIENT_SEARCH], LOADING_WEB_SEARCH)],
    ids=["in-a-namespace", "loaded-by-a-search"],
)
async def test_a_hosted_tool_a_namespace_or_a_search_holds_is_reserved_at_its_fee(
    tmp_path: Path, store_url: str, tools: list[Any], given: Any
) -> None:
    """gpt-5 prices web_search; the fake makes two calls of it."""
    fake = FakeUpstream(FakeSettings(latency=0.15, hosted_tool_calls=2))
    policy = prices_support.prices_policy(tmp_path)
    async with local_stack(policy, store=store_url, fake=fake) as stack, sdk(stack) as client:
        call = client.responses.create(
            model="gpt-5", input=given, tools=tools, max_output_tokens=20
        )
        _, reserved, charged = await prices_support.measured_call(stack.ledger, call)
    [billed] = fake.billed
    assert billed.tool_calls == {"web_search": 2}, billed
    cost = prices_support.billed_cost(billed)
    assert cost <= charged <= reserved, (cost, charged, reserved)
