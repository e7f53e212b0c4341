"""Azure OpenAI through the proxy with openai's AsyncAzureOpenAI client: deployment paths with an
api-version, `api-key` auth, deployments priced as the models they run, degrades that stay on a
deployment of the same resource, and the ledger exact to the unit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from breadth_support import HEADERS, breadth_policy, cost
from support import settled
from yarl import URL

from proxy.gateway.context import API_KEYS
from proxy.policy.runtime import Policy
from proxy.testing.fake_upstream import WORD, FakeSettings, FakeUpstream
from proxy.testing.local import Stack, local_stack

AZURE = """
azure:
  kind: azure
  base_url: "https://my-resource.openai.azure.com/openai"
  api_key_env: AZURE_OPENAI_API_KEY
  api_version: "2024-10-21"
  deployments:
    my-gpt4o: gpt-4o
    my-mini: gpt-4o-mini
    my-embed: text-embedding-3-small
    my-instruct: gpt-3.5-turbo-instruct
"""
DEPLOYMENTS = {
    "my-gpt4o": "gpt-4o",
    "my-mini": "gpt-4o-mini",
    "my-embed": "text-embedding-3-small",
    "my-instruct": "gpt-3.5-turbo-instruct",
}
MESSAGES: Any = [{"role": "user", "content": "Summarise the budget in one line."}]
VERSION = "2024-10-21"


def azure_policy(tmp_path: Path, plan: str = "") -> Policy:
    return breadth_policy(tmp_path, upstreams=AZURE, plan=plan)


def fake() -> FakeUpstream:
    return FakeUpstream(FakeSettings(deployments=dict(DEPLOYMENTS)))


def client(stack: Stack, api_key: str = "unused", **headers: str) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint=stack.url,
        api_key=api_key,
        api_version=VERSION,
        default_headers={**HEADERS, **headers},
        max_retries=0,
    )


def paths(stack: Stack) -> list[str]:
    return [path for path, _, _ in stack.fake.requests]


async def test_chat_on_a_deployment_is_priced_as_its_model(tmp_path: Path, store_url: str) -> None:
    async with local_stack(azure_policy(tmp_path), store=store_url, fake=fake()) as stack:
        async with client(stack) as azure:
            answer = await azure.chat.completions.create(
                model="my-gpt4o", messages=MESSAGES, max_tokens=12
            )
        assert answer.choices[0].message.content == WORD * 12
        assert paths(stack) == ["/v1/deployments/my-gpt4o/chat/completions"]
        sent_headers = stack.fake.requests[0][1]
        assert sent_headers["api-key"] == stack.fake.settings.api_key
        assert "Authorization" not in sent_headers
        prompt = stack.fake.billed[0].prompt_tokens
        row = await settled(stack.ledger)
        assert row.spent == cost("gpt-4o", input=prompt, output=12)


async def test_streamed_chat_on_a_deployment_is_settled_from_its_usage(
    tmp_path: Path, store_url: str
) -> None:
    async with local_stack(azure_policy(tmp_path), store=store_url, fake=fake()) as stack:
        async with client(stack) as azure:
            stream = await azure.chat.completions.create(
                model="my-gpt4o", messages=MESSAGES, max_tokens=9, stream=True
            )
            chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WORD * 9
        assert all(c.usage is None for c in chunks)
        row = await settled(stack.ledger)
        assert row.spent == cost("gpt-4o", input=stack.fake.billed[0].prompt_tokens, output=9)


async def test_embeddings_and_completions_on_deployments(tmp_path: Path, store_url: str) -> None:
    async with local_stack(azure_policy(tmp_path), store=store_url, fake=fake()) as stack:
        async with client(stack) as azure:
            await azure.embeddings.create(model="my-embed", input=["one", "two"])
            await azure.completions.create(model="my-instruct", prompt="Say hi", max_tokens=5)
        assert paths(stack) == [
            "/v1/deployments/my-embed/embeddings",
            "/v1/deployments/my-instruct/completions",
        ]
        embed, instruct = stack.fake.billed
        row = await settled(stack.ledger)
        assert row.spent == cost("text-embedding-3-small", input=embed.prompt_tokens) + cost(
            "gpt-3.5-turbo-instruct", input=instruct.prompt_tokens, output=5
        )


async def test_degrade_goes_to_a_deployment_of_the_cheaper_model(tmp_path: Path) -> None:
    plan = """
    degrade:
      - {when: {scope: tenant, remaining_below: 1000}, set: {model: gpt-4o-mini}}
    """
    async with local_stack(azure_policy(tmp_path, plan), fake=fake()) as stack:
        async with client(stack) as azure:
            raw = await azure.chat.completions.with_raw_response.create(
                model="my-gpt4o", messages=MESSAGES, max_tokens=10
            )
        assert raw.headers["x-cycles-caps"] == "model=my-mini"
        assert paths(stack) == ["/v1/deployments/my-mini/chat/completions"]
        assert stack.fake.requests[0][2]["model"] == "gpt-4o-mini"
        row = await settled(stack.ledger)
        assert row.spent == cost("gpt-4o-mini", input=stack.fake.billed[0].prompt_tokens, output=10)


async def test_degrade_without_a_deployment_of_the_model_does_not_apply(tmp_path: Path) -> None:
    plan = """
    degrade:
      - {when: {scope: tenant, remaining_below: 1000}, set: {model: o3-mini}}
    """
    async with local_stack(azure_policy(tmp_path, plan), fake=fake()) as stack:
        async with client(stack) as azure:
            raw = await azure.chat.completions.with_raw_response.create(
                model="my-gpt4o", messages=MESSAGES, max_tokens=10
            )
        assert raw.headers["x-cycles-decision"] == "ALLOW"
        assert paths(stack) == ["/v1/deployments/my-gpt4o/chat/completions"]


async def test_openai_path_call_to_a_deployment_uses_the_upstreams_api_version(
    tmp_path: Path,
) -> None:
    async with local_stack(azure_policy(tmp_path), fake=fake()) as stack:
        async with openai.AsyncOpenAI(
            base_url=stack.url + "/v1", api_key="unused", default_headers=HEADERS
        ) as plain:
            await plain.chat.completions.create(model="my-mini", messages=MESSAGES, max_tokens=3)
        assert paths(stack) == ["/v1/deployments/my-mini/chat/completions"]
        row = await settled(stack.ledger)
        assert row.spent == cost("gpt-4o-mini", input=stack.fake.billed[0].prompt_tokens, output=3)


async def test_unknown_deployment_is_404_and_nothing_reserved(tmp_path: Path) -> None:
    async with local_stack(azure_policy(tmp_path), fake=fake()) as stack:
        async with client(stack) as azure:
            with pytest.raises(openai.NotFoundError) as raised:
                await azure.chat.completions.create(
                    model="nobodys-deployment", messages=MESSAGES, max_tokens=3
                )
        body = raised.value.body
        assert isinstance(body, dict) and body["code"] == "deployment_not_found"
        assert stack.fake.requests == [] and await stack.ledger.balances("alpha") == []


@pytest.mark.parametrize("deployment", ["my%20mini", "-x", ".hidden", "x" * 129])
async def test_a_deployment_name_no_upstream_could_list_is_404_and_nothing_reserved(
    tmp_path: Path, deployment: str
) -> None:
    """Issue 14, item 6: names the router took but the deployment shape refuses (a space, a
    leading '-' or '.', too long) hit an assertion: a 500. They name no deployment: 404 saying
    what a deployment name is, nothing sent, nothing reserved."""
    async with (
        local_stack(azure_policy(tmp_path), fake=fake()) as stack,
        aiohttp.ClientSession() as http,
    ):
        url = f"{stack.url}/openai/deployments/{deployment}/chat/completions?api-version={VERSION}"
        body = {"messages": MESSAGES, "max_tokens": 3}
        async with http.post(URL(url, encoded=True), json=body, headers=HEADERS) as r:
            assert r.status == 404, await r.text()
            error = (await r.json())["error"]
    assert error["code"] == "deployment_not_found"
    assert "A-Z a-z 0-9 _ . -" in error["message"], error
    assert stack.fake.requests == [] and await stack.ledger.balances("alpha") == []


@pytest.mark.parametrize(
    ("query", "code"),
    [("", "missing_api_version"), ("?api-version=2024%2F10", "invalid_api_version")],
)
async def test_bad_api_version_is_400_and_nothing_reserved(
    tmp_path: Path, query: str, code: str
) -> None:
    pol = azure_policy(tmp_path)
    upstreams = {**pol.upstreams}
    upstreams["azure"] = dataclasses.replace(upstreams["azure"], api_version=None)
    pol = dataclasses.replace(pol, upstreams=upstreams)
    async with local_stack(pol, fake=fake()) as stack, aiohttp.ClientSession() as http:
        url = stack.url + "/openai/deployments/my-mini/chat/completions" + query
        body = {"messages": MESSAGES, "max_tokens": 3}
        async with http.post(url, json=body, headers=HEADERS) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error["code"] == code and "api-version" in error["message"]
        assert stack.fake.requests == [] and await stack.ledger.balances("alpha") == []


async def test_gateway_key_is_read_from_the_api_key_header(tmp_path: Path) -> None:
    pol = dataclasses.replace(azure_policy(tmp_path), identity="api_key")
    async with local_stack(pol, fake=fake(), sweep_every=None) as stack:
        plain, _ = await stack.app[API_KEYS].create("alpha")
        async with openai.AsyncAzureOpenAI(
            azure_endpoint=stack.url, api_key=plain, api_version=VERSION
        ) as azure:
            await azure.chat.completions.create(model="my-mini", messages=MESSAGES, max_tokens=2)
        assert stack.fake.requests[0][1]["api-key"] == stack.fake.settings.api_key
        row = await settled(stack.ledger)
        assert row.spent == cost("gpt-4o-mini", input=stack.fake.billed[0].prompt_tokens, output=2)


def test_check_prints_the_deployments_and_how_the_key_is_sent(tmp_path: Path) -> None:
    from proxy.policy.describe import describe

    text = describe(azure_policy(tmp_path))
    assert "azure: azure https://my-resource.openai.azure.com/openai" in text
    assert "(key from $AZURE_OPENAI_API_KEY as api-key)" in text
    assert "api-version 2024-10-21 when the client names none" in text
    assert "my-gpt4o → sent as my-gpt4o, priced as gpt-4o" in text
