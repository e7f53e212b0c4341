"""A closed world for request fields (proxy/metering/request_fields.py): every field of every
budgeted endpoint is neutral (forwarded as sent), modelled (reserved, so the provider's bill stays
within the reservation), priced by the policy, or refused with 400 `unpriced_feature`; a field the
table does not know is refused too, unless the policy says `request_fields: forward`.

The table must cover every request field the openai and anthropic SDKs can send, and each of
its fields is tried against the fake provider here with a value it could carry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fields_support import BODIES, HEADERS, PATHS, fields_policy, one_call

from proxy.core.errors import BadRequest
from proxy.metering.estimate import EndpointName
from proxy.metering.request_fields import FIELDS, Field, check_fields
from proxy.testing.local import local_stack

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
FUNCTION = {"name": "lookup", "description": "Look it up.", "parameters": SCHEMA}

SAMPLING: dict[str, dict[str, Any]] = {
    "temperature": {"temperature": 0.2},
    "top_p": {"top_p": 0.9},
    "user": {"user": "end-user-7"},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "top_k": {"top_k": 20},
    "min_p": {"min_p": 0.05},
    "repetition_penalty": {"repetition_penalty": 1.1},
    "presence_penalty": {"presence_penalty": 0.5},
    "logit_bias": {"logit_bias": {"15339": -5}},
    "seed": {"seed": 7},
}
"""Sampling fields chat and completions both take (cost-neutral), each with a sample."""

SAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    # -- chat ---------------------------------------------------------------------------------
    ("chat", "model"): {"model": "gpt-4o-mini"},
    ("chat", "messages"): {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "name": "ada", "content": [{"type": "text", "text": "Say hi"}]},
        ]
    },
    **{("chat", name): sample for name, sample in SAMPLING.items()},
    ("chat", "stop"): {"stop": ["\n\n"]},
    ("chat", "stream"): {"stream": True},
    ("chat", "stream_options"): {"stream": True, "stream_options": {"include_usage": True}},
    ("chat", "n"): {"n": 3},
    ("chat", "best_of"): {"n": 2, "best_of": 4},
    ("chat", "prompt_cache_key"): {"prompt_cache_key": "tenant-alpha"},
    ("chat", "prompt_cache_retention"): {"prompt_cache_retention": "24h"},
    ("chat", "prompt_cache_options"): {"prompt_cache_options": {"mode": "implicit"}},
    ("chat", "safety_identifier"): {"safety_identifier": "hash-7"},
    ("chat", "metadata"): {"metadata": {"ticket": "42"}},
    ("chat", "tools"): {"tools": [{"type": "function", "function": FUNCTION}]},
    ("chat", "tool_choice"): {
        "tools": [{"type": "function", "function": FUNCTION}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    },
    ("chat", "functions"): {"functions": [FUNCTION]},
    ("chat", "function_call"): {"functions": [FUNCTION], "function_call": {"name": "lookup"}},
    ("chat", "response_format"): {
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    },
    ("chat", "max_completion_tokens"): {"max_completion_tokens": 7},
    ("chat", "max_tokens"): {"max_completion_tokens": None, "max_tokens": 7},
    ("chat", "modalities"): {"modalities": ["text"]},
    ("chat", "audio"): {
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
    },
    ("chat", "logprobs"): {"logprobs": True},
    ("chat", "top_logprobs"): {"logprobs": True, "top_logprobs": 3},
    ("chat", "parallel_tool_calls"): {"parallel_tool_calls": False},
    ("chat", "reasoning_effort"): {"reasoning_effort": "low"},
    ("chat", "verbosity"): {"verbosity": "low"},
    ("chat", "store"): {"store": False},
    ("chat", "user_security_context"): {"user_security_context": {"end_user_id": "u-7"}},
    ("chat", "service_tier"): {"service_tier": "flex"},
    ("chat", "web_search_options"): {"web_search_options": {"search_context_size": "low"}},
    ("chat", "prediction"): {"prediction": {"type": "content", "content": "Hi there"}},
    ("chat", "moderation"): {"moderation": {"model": "omni-moderation-latest"}},
    ("chat", "data_sources"): {"data_sources": [{"type": "azure_search", "parameters": {}}]},
    # -- completions --------------------------------------------------------------------------
    ("completions", "model"): {"model": "gpt-3.5-turbo-instruct"},
    ("completions", "prompt"): {"prompt": ["Say hi", "Say bye"]},
    ("completions", "suffix"): {"prompt": ["Say hi", "Say bye"], "suffix": " and then stop."},
    ("completions", "max_tokens"): {"max_tokens": 7},
    **{("completions", name): sample for name, sample in SAMPLING.items()},
    ("completions", "stop"): {"stop": "\n"},
    ("completions", "stream"): {"stream": True},
    ("completions", "stream_options"): {"stream": True, "stream_options": {"include_usage": True}},
    ("completions", "n"): {"n": 3},
    ("completions", "best_of"): {"n": 2, "best_of": 3},
    ("completions", "echo"): {"echo": True},
    ("completions", "logprobs"): {"logprobs": 2},
    # -- embeddings ---------------------------------------------------------------------------
    ("embeddings", "model"): {"model": "text-embedding-3-small"},
    ("embeddings", "input"): {"input": ["Say hi", [15339, 1917]]},
    ("embeddings", "temperature"): {"temperature": 0.2},
    ("embeddings", "top_p"): {"top_p": 0.9},
    ("embeddings", "user"): {"user": "end-user-7"},
    ("embeddings", "dimensions"): {"dimensions": 256},
    ("embeddings", "encoding_format"): {"encoding_format": "base64"},
    # -- responses ----------------------------------------------------------------------------
    ("responses", "model"): {"model": "gpt-4o-mini"},
    ("responses", "input"): {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hi"}]}]
    },
    ("responses", "instructions"): {"instructions": "Be terse."},
    ("responses", "tools"): {"tools": [{"type": "function", **FUNCTION}]},
    ("responses", "tool_choice"): {
        "tools": [{"type": "function", **FUNCTION}],
        "tool_choice": {"type": "function", "name": "lookup"},
    },
    ("responses", "text"): {
        "text": {"format": {"type": "json_schema", "name": "x", "schema": SCHEMA}}
    },
    ("responses", "max_output_tokens"): {"max_output_tokens": 7},
    ("responses", "temperature"): {"temperature": 0.2},
    ("responses", "top_p"): {"top_p": 0.9},
    ("responses", "user"): {"user": "end-user-7"},
    ("responses", "prompt_cache_key"): {"prompt_cache_key": "tenant-alpha"},
    ("responses", "prompt_cache_retention"): {"prompt_cache_retention": "24h"},
    ("responses", "prompt_cache_options"): {"prompt_cache_options": {"mode": "implicit"}},
    ("responses", "safety_identifier"): {"safety_identifier": "hash-7"},
    ("responses", "metadata"): {"metadata": {"ticket": "42"}},
    ("responses", "stream"): {"stream": True},
    ("responses", "stream_options"): {
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    },
    ("responses", "include"): {"include": ["reasoning.encrypted_content"]},
    ("responses", "parallel_tool_calls"): {"parallel_tool_calls": False},
    ("responses", "reasoning"): {"reasoning": {"effort": "low"}},
    ("responses", "store"): {"store": False},
    ("responses", "top_logprobs"): {"top_logprobs": 2},
    ("responses", "truncation"): {"truncation": "auto"},
    ("responses", "image"): {"image": {"context_compression": "auto"}},
    ("responses", "service_tier"): {"service_tier": "flex"},
    ("responses", "max_tool_calls"): {"max_tool_calls": 2},
    ("responses", "prompt"): {"prompt": {"id": "pmpt_123"}},
    ("responses", "previous_response_id"): {"previous_response_id": "resp_123"},
    ("responses", "conversation"): {"conversation": "conv_123"},
    ("responses", "background"): {"background": True},
    ("responses", "background_options"): {"background_options": {"completion_window": "2h"}},
    ("responses", "context_management"): {
        "context_management": [{"type": "compaction", "compact_threshold": 1000}]
    },
    ("responses", "moderation"): {"moderation": {"model": "omni-moderation-latest"}},
    ("responses", "access_programs"): {"access_programs": {"cyber": "daybreak_red"}},
    # -- messages -----------------------------------------------------------------------------
    ("messages", "model"): {"model": "claude-sonnet-4"},
    ("messages", "messages"): {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
    },
    ("messages", "system"): {"system": [{"type": "text", "text": "Be terse."}]},
    ("messages", "tools"): {"tools": [{"name": "lookup", "input_schema": SCHEMA}]},
    ("messages", "tool_choice"): {
        "tools": [{"name": "lookup", "input_schema": SCHEMA}],
        "tool_choice": {"type": "tool", "name": "lookup"},
    },
    ("messages", "output_config"): {
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": SCHEMA}}
    },
    ("messages", "max_tokens"): {"max_tokens": 7},
    ("messages", "metadata"): {"metadata": {"user_id": "u-7"}},
    ("messages", "stop_sequences"): {"stop_sequences": ["\n\n"]},
    ("messages", "stream"): {"stream": True},
    ("messages", "temperature"): {"temperature": 0.2},
    ("messages", "top_k"): {"top_k": 5},
    ("messages", "top_p"): {"top_p": 0.9},
    ("messages", "thinking"): {"thinking": {"type": "adaptive"}},
    ("messages", "diagnostics"): {"diagnostics": {"previous_message_id": "msg_1"}},
    ("messages", "container"): {"container": "container_1"},
    ("messages", "billing_policy"): {
        "billing_policy": {"type": "billing_policy", "bill_to": "user_profile"}
    },
    ("messages", "fallback_credit_token"): {"fallback_credit_token": "fct_1"},
    ("messages", "service_tier"): {"service_tier": "standard_only"},
    ("messages", "cache_control"): {"cache_control": {"type": "ephemeral"}},
    ("messages", "inference_geo"): {"inference_geo": "us"},
    ("messages", "speed"): {"speed": "fast"},
    ("messages", "mcp_servers"): {
        "mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "x"}]
    },
    ("messages", "context_management"): {
        "context_management": {"edits": [{"type": "compact_20260112"}]}
    },
    ("messages", "compaction"): {"compaction": {"type": "enabled"}},
    ("messages", "fallbacks"): {"fallbacks": [{"model": "claude-haiku-4"}]},
    ("messages", "thread"): {"thread": {"type": "create"}},
}
"""Per (endpoint, field): the fields a request adds to exercise it (with any it needs)."""


def _of(kind: str) -> list[tuple[str, str]]:
    return [(e, name) for e, table in FIELDS.items() for name, f in table.items() if f.kind == kind]


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{endpoint}.{name}" for endpoint, name in cases]


NEUTRAL, MODELLED, PRICING, REFUSED = (
    _of(k) for k in ("neutral", "modelled", "pricing", "refused")
)


def body_with(endpoint: str, name: str) -> dict[str, Any]:
    body = {**BODIES[endpoint], **SAMPLES[(endpoint, name)]}
    return {k: v for k, v in body.items() if v is not None}


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body, headers=HEADERS) as r:
        if r.content_type == "text/event-stream":
            await r.read()
            return r.status, {}
        return r.status, await r.json()


# -- the table -------------------------------------------------------------------------------


def test_every_field_in_the_table_has_a_sample_and_every_sample_a_field() -> None:
    listed = {(e, name) for e, table in FIELDS.items() for name in table}
    assert listed == set(SAMPLES)


def _sdk_fields() -> dict[EndpointName, set[str]]:
    """The request body fields of the installed SDKs' create() params (headers excluded)."""
    from anthropic.types import message_create_params as anthropic_messages
    from anthropic.types.beta import message_create_params as anthropic_beta
    from openai.types import completion_create_params, embedding_create_params
    from openai.types.chat import completion_create_params as chat_params
    from openai.types.responses import response_create_params

    def keys(params: Any) -> set[str]:
        return set(params.__annotations__) | {"stream"}

    headers = {"betas", "user_profile_id", "workspace_id"}
    return {
        "chat": keys(chat_params.CompletionCreateParamsBase),
        "completions": keys(completion_create_params.CompletionCreateParamsBase),
        "embeddings": keys(embedding_create_params.EmbeddingCreateParams) - {"stream"},
        "responses": keys(response_create_params.ResponseCreateParamsBase),
        "messages": (
            keys(anthropic_messages.MessageCreateParamsBase)
            | keys(anthropic_beta.MessageCreateParamsBase)
        )
        - headers,
    }


@pytest.mark.parametrize("endpoint", list(FIELDS))
def test_the_table_covers_every_field_the_sdks_send(endpoint: EndpointName) -> None:
    """A new field in the openai or anthropic SDK must be classified before it can pass."""
    missing = _sdk_fields()[endpoint] - set(FIELDS[endpoint])
    where = "proxy/metering/request_fields.py"
    assert not missing, f"{endpoint}: classify {sorted(missing)} in {where}"


@pytest.mark.parametrize(("endpoint", "name"), PRICING, ids=_ids(PRICING))
def test_fields_priced_by_the_policy_are_left_to_the_pricing_code(
    endpoint: EndpointName, name: str
) -> None:
    """Service tiers, hosted tools, stored prompts: pricing reserves or refuses them."""
    check_fields(body_with(endpoint, name), endpoint, "strict")
    assert "see pricing" in FIELDS[endpoint][name].note


# -- neutral and modelled fields: forwarded, and the bill stays within the reservation --------


@pytest.mark.parametrize(("endpoint", "name"), NEUTRAL, ids=_ids(NEUTRAL))
async def test_a_neutral_field_is_forwarded_as_sent_and_charged_what_was_billed(
    tmp_path: Path, endpoint: str, name: str
) -> None:
    body = body_with(endpoint, name)
    async with local_stack(fields_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        status, answer = await post(http, stack.url + PATHS[endpoint], body)
        assert status == 200, answer
        sent = stack.fake.requests[0][2]
        assert sent[name] == body[name]
        await one_call(stack)


@pytest.mark.parametrize(("endpoint", "name"), MODELLED, ids=_ids(MODELLED))
async def test_a_modelled_field_is_reserved_for_what_the_provider_bills(
    tmp_path: Path, endpoint: str, name: str
) -> None:
    body = body_with(endpoint, name)
    async with local_stack(fields_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        status, answer = await post(http, stack.url + PATHS[endpoint], body)
        assert status == 200, answer
        await one_call(stack)


# -- refused and unknown fields ----------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "name"), REFUSED, ids=_ids(REFUSED))
async def test_a_refused_field_is_400_unpriced_feature_and_changes_nothing(
    tmp_path: Path, store_url: str, endpoint: str, name: str
) -> None:
    body = body_with(endpoint, name)
    async with (
        local_stack(fields_policy(tmp_path), store=store_url) as stack,
        aiohttp.ClientSession() as http,
    ):
        status, answer = await post(http, stack.url + PATHS[endpoint], body)
        assert status == 400
        error = answer["error"]
        assert error["code"] == "unpriced_feature"
        assert f"'{name}'" in error["message"] and "request_fields: forward" in error["message"]
        if endpoint == "messages":
            assert answer["type"] == "error" and error["type"] == "invalid_request_error"
        else:
            assert error["param"] == name
        assert stack.fake.requests == []
        assert all(r.spent == r.reserved == 0 for r in await stack.ledger.balances("alpha"))


@pytest.mark.parametrize(("endpoint", "name"), REFUSED, ids=_ids(REFUSED))
async def test_a_refused_field_is_forwarded_when_the_policy_says_forward(
    tmp_path: Path, endpoint: str, name: str
) -> None:
    body = body_with(endpoint, name)
    pol = fields_policy(tmp_path, top="request_fields: forward")
    async with local_stack(pol) as stack, aiohttp.ClientSession() as http:
        status, answer = await post(http, stack.url + PATHS[endpoint], body)
        assert status == 200, answer
        assert stack.fake.requests[0][2][name] == body[name]


@pytest.mark.parametrize(
    ("endpoint", "fields"),
    [
        ("responses", {"background": False}),
        ("responses", {"access_programs": {"cyber": "standard"}}),
        ("messages", {"inference_geo": "global", "speed": "standard"}),
        ("chat", {"prediction": None, "moderation": None}),
    ],
)
async def test_a_refused_field_whose_value_asks_for_nothing_passes(
    tmp_path: Path, endpoint: str, fields: dict[str, Any]
) -> None:
    async with local_stack(fields_policy(tmp_path)) as stack, aiohttp.ClientSession() as http:
        status, answer = await post(
            http, stack.url + PATHS[endpoint], {**BODIES[endpoint], **fields}
        )
        assert status == 200, answer
        await one_call(stack)


@pytest.mark.parametrize("endpoint", list(PATHS))
async def test_an_unknown_field_is_400_unpriced_feature_and_changes_nothing(
    tmp_path: Path, store_url: str, endpoint: str
) -> None:
    body = {**BODIES[endpoint], "turbo_mode": {"replicas": 8}}
    async with (
        local_stack(fields_policy(tmp_path), store=store_url) as stack,
        aiohttp.ClientSession() as http,
    ):
        status, answer = await post(http, stack.url + PATHS[endpoint], body)
        assert status == 400
        error = answer["error"]
        assert error["code"] == "unpriced_feature" and "'turbo_mode'" in error["message"]
        assert "request_fields: forward" in error["message"]
        assert stack.fake.requests == []
        assert all(r.spent == r.reserved == 0 for r in await stack.ledger.balances("alpha"))


@pytest.mark.parametrize("endpoint", list(PATHS))
async def test_an_unknown_field_is_forwarded_and_charged_with_request_fields_forward(
    tmp_path: Path, store_url: str, endpoint: str
) -> None:
    body = {**BODIES[endpoint], "turbo_mode": {"replicas": 8}}
    pol = fields_policy(tmp_path, top="request_fields: forward")
    async with local_stack(pol, store=store_url) as stack, aiohttp.ClientSession() as http:
        status, answer = await post(http, stack.url + PATHS[endpoint], body)
        assert status == 200, answer
        assert stack.fake.requests[0][2]["turbo_mode"] == {"replicas": 8}
        await one_call(stack)


SKILL = {"type": "anthropic", "skill_id": "pptx", "version": "latest"}


@pytest.mark.parametrize(
    "container",
    ["container_abc", {"id": "container_abc"}, {"skills": []}, {"id": "c", "skills": None}],
)
def test_a_container_id_is_neutral(container: Any) -> None:
    check_fields({**BODIES["messages"], "container": container}, "messages", "strict")


@pytest.mark.parametrize(
    ("container", "where"),
    [
        ({"skills": [SKILL]}, "container.skills"),
        ({"id": "container_abc", "skills": [SKILL]}, "container.skills"),
        ({"id": "container_abc", "replicas": 8}, "container.replicas"),
    ],
)
def test_a_container_field_that_adds_cost_or_is_unknown_is_refused(
    container: dict[str, Any], where: str
) -> None:
    """Agent Skills add their descriptions and files to the prompt; a field of the container
    object the table does not list is refused like an unknown field of the request."""
    body = {**BODIES["messages"], "container": container}
    with pytest.raises(BadRequest) as raised:
        check_fields(body, "messages", "strict")
    assert raised.value.param == where and raised.value.code == "unpriced_feature"
    assert f"'{where}'" in str(raised.value) and "request_fields: forward" in str(raised.value)
    check_fields(body, "messages", "forward")


def test_the_container_table_covers_every_field_the_sdk_sends() -> None:
    from anthropic.types.beta.beta_container_params import BetaContainerParams
    from anthropic.types.container_params import ContainerParams

    inner = FIELDS["messages"]["container"].inner
    assert inner is not None
    assert set(ContainerParams.__annotations__) | set(BetaContainerParams.__annotations__) <= set(
        inner
    )


def test_a_field_of_another_api_is_unknown_here() -> None:
    """`messages` belongs to chat, not to completions; `n` to OpenAI, not to Messages."""
    with pytest.raises(BadRequest) as raised:
        check_fields({**BODIES["completions"], "messages": []}, "completions", "strict")
    assert raised.value.param == "messages" and raised.value.code == "unpriced_feature"
    with pytest.raises(BadRequest):
        check_fields({**BODIES["messages"], "n": 2}, "messages", "strict")


# -- the README's table ------------------------------------------------------------------------

CLASS_NAMES = {
    "modelled": "cost-bearing, modelled",
    "pricing": "cost-bearing, priced by the policy",
    "refused": "cost-bearing, refused",
}
HEADINGS = {
    "chat": "`/v1/chat/completions` (Azure `…/chat/completions`)",
    "completions": "`/v1/completions` (Azure `…/completions`)",
    "embeddings": "`/v1/embeddings` (Azure `…/embeddings`)",
    "responses": "`/v1/responses`",
    "messages": "`/v1/messages`",
}


def readme_table() -> str:
    """The README's rendering of FIELDS: per endpoint, each cost-bearing field with its class and
    what is reserved and charged for it, then the neutral fields in one row."""
    out = []
    for endpoint, table in FIELDS.items():
        out += [f"**{HEADINGS[endpoint]}**", "", "| field | class | what is reserved, or why not |"]
        out.append("|---|---|---|")
        for kind in ("modelled", "pricing", "refused"):
            out += [
                f"| `{name}` | {CLASS_NAMES[kind]} | {f.note} |"
                for name, f in _with_inner(table)
                if f.kind == kind
            ]
        neutral = ", ".join(f"`{n}`" for n, f in table.items() if f.kind == "neutral")
        out += [f"| {neutral or '—'} | cost-neutral | forwarded as sent; nothing reserved |", ""]
    return "\n".join(out).rstrip() + "\n"


def _with_inner(table: Mapping[str, Field]) -> list[tuple[str, Field]]:
    """Each field, then the fields of its object (`container.skills`) if it has a table of them."""
    rows: list[tuple[str, Field]] = []
    for name, f in table.items():
        rows.append((name, f))
        rows += [(f"{name}.{key}", g) for key, g in (f.inner or {}).items()]
    return rows


def test_the_readme_table_is_the_code_table() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- request-fields:begin -->\n") + len("<!-- request-fields:begin -->\n")
    end = readme.index("<!-- request-fields:end -->")
    assert readme[start:end] == readme_table(), "README.md: replace the table with\n" + (
        readme_table()
    )


def test_readme_names_the_refusal_and_the_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"request_fields: forward", readme)
    assert "unpriced_feature" in readme


# -- Azure deployment paths ----------------------------------------------------------------------

AZURE = """
azure:
  kind: azure
  base_url: "https://my-resource.openai.azure.com/openai"
  api_key_env: AZURE_OPENAI_API_KEY
  api_version: "2024-10-21"
  deployments: {my-mini: gpt-4o-mini, my-instruct: gpt-3.5-turbo-instruct}
"""


async def test_azure_deployment_paths_use_the_openai_tables(tmp_path: Path, store_url: str) -> None:
    """On Azure too: On Your Data is refused, and a completions batch is reserved in full."""
    from breadth_support import breadth_policy

    from proxy.testing.fake_upstream import FakeSettings, FakeUpstream

    deployments = {"my-mini": "gpt-4o-mini", "my-instruct": "gpt-3.5-turbo-instruct"}
    fake = FakeUpstream(FakeSettings(deployments=deployments))
    pol = breadth_policy(tmp_path, upstreams=AZURE)
    query = "?api-version=2024-10-21"
    async with (
        local_stack(pol, store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        chat = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 5}
        on_your_data = {**chat, "data_sources": [{"type": "azure_search", "parameters": {}}]}
        url = f"{stack.url}/openai/deployments/my-mini/chat/completions{query}"
        status, answer = await post(http, url, on_your_data)
        assert status == 400 and answer["error"]["code"] == "unpriced_feature"
        assert answer["error"]["param"] == "data_sources"
        assert stack.fake.requests == []
        batch = {"prompt": ["Say hi", "Say bye", "Say why"], "max_tokens": 5}
        url = f"{stack.url}/openai/deployments/my-instruct/completions{query}"
        status, answer = await post(http, url, batch)
        assert status == 200, answer
        assert stack.fake.billed[0].completion_tokens == 15
        await one_call(stack)


def test_request_fields_is_strict_by_default_and_anything_else_is_a_policy_error(
    tmp_path: Path,
) -> None:
    from proxy.core.errors import PolicyError

    assert fields_policy(tmp_path).request_fields == "strict"
    with pytest.raises(PolicyError, match="request_fields"):
        fields_policy(tmp_path, top="request_fields: loose")
