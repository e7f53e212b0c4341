"""A closed world for request fields: every field of every budgeted endpoint is in one class of
one table, and the class says what the proxy does with it. No I/O.

- **neutral**: forwarded as sent; it changes nothing the provider bills beyond what the
  reservation already covers (sampling, formats, ids, caching hints, the way the answer comes).
- **modelled**: cost-bearing, and the estimate reserves it: the prompt (messages, input, tools,
  schemas), the completion limit and the number of choices (`n`, `best_of`, a prompt batch).
- **pricing**: cost-bearing, and priced by the policy (service tiers, hosted and server tools,
  documents, stored prompts): the pricing code reserves it at the policy's price, or refuses
  the call with 400 `unpriced_feature` when the policy has none.
- **refused**: cost-bearing in a way the proxy cannot bound: 400 `unpriced_feature`, naming the
  field, unless its value asks for nothing (`background: false`) or the policy says
  `request_fields: forward`.

A field the table does not list for the endpoint is refused like a refused one (with
`request_fields: strict`, the default), since nobody can say what it costs; `forward` forwards
it, and then the promise "billed ≤ charged ≤ reserved" holds only for calls without such
fields. A field sent as JSON `null` asks for nothing and is never refused. Azure deployment
paths use the table of the OpenAI operation they serve. The README's table "What is reserved
and what is charged" is this one, kept equal by tests/metering/test_request_fields.py.

A field whose value may be an object has a table of that object's fields, checked the same way
(one it does not list is refused too): Messages' `container` is neutral as an id (a string, or
`{id}`), but its `skills` (Agent Skills) are refused, named `container.skills`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxy.core.errors import BadRequest
from proxy.metering.estimate import EndpointName

FieldClass = Literal["neutral", "modelled", "pricing", "refused"]
RequestFields = Literal["strict", "forward"]


@dataclass(frozen=True, slots=True)
class Field:
    kind: FieldClass
    note: str
    """Why it is neutral, how it is reserved, or why it is refused: one line."""
    asks_nothing: tuple[object, ...] = ()
    """Refused fields: values that ask for nothing billable (`False`, `"standard"`)."""
    inner: Mapping[str, Field] | None = None
    """A field whose value may be an object: the class of each of that object's fields, checked
    like the request's (one not listed, or refused, is refused naming `container.skills`). A
    value that is not an object (an id) is the field's own class."""


def _neutral(note: str) -> Field:
    return Field("neutral", note)


def _modelled(note: str) -> Field:
    return Field("modelled", note)


def _pricing(note: str) -> Field:
    return Field("pricing", note)


def _refused(note: str, *asks_nothing: object) -> Field:
    return Field("refused", note, asks_nothing)


_SAMPLING = "sampling only; the completion limit still bounds the output"
_ID = "an identifier the provider keeps; billed nothing"
_CACHE = "caching changes only the prompt's split into cache reads and writes, read from usage"
_STREAM = "how the answer comes; a stream is settled on its usage report or counted text"
_LIMIT = "the completion bound per choice: the proxy writes exactly one limit field, this bound"

_OPENAI_COMMON: dict[str, Field] = {
    "model": _modelled("the model's price entry; the prompt counted in its encoding"),
    "temperature": _neutral(_SAMPLING),
    "top_p": _neutral(_SAMPLING),
    "user": _neutral(_ID),
}
_GENERATION: dict[str, Field] = {
    **_OPENAI_COMMON,
    "frequency_penalty": _neutral(_SAMPLING),
    "presence_penalty": _neutral(_SAMPLING),
    "logit_bias": _neutral(_SAMPLING),
    "seed": _neutral(_SAMPLING),
    "stop": _neutral("can only end the output sooner"),
    "stream": _neutral(_STREAM),
    "stream_options": _neutral(_STREAM),
    "top_k": _neutral(f"vLLM: {_SAMPLING}"),
    "min_p": _neutral(f"vLLM: {_SAMPLING}"),
    "repetition_penalty": _neutral(f"vLLM: {_SAMPLING}"),
    "n": _modelled("choices: each reserves the completion limit"),
    "best_of": _modelled(
        "candidates generated and billed per prompt: choices are max(n, best_of); not with stream"
    ),
}
_CACHING: dict[str, Field] = {
    "prompt_cache_key": _neutral(_CACHE),
    "prompt_cache_retention": _neutral(_CACHE),
    "prompt_cache_options": _neutral(_CACHE),
    "safety_identifier": _neutral(_ID),
    "metadata": _neutral(_ID),
}

CHAT: dict[str, Field] = {
    **_GENERATION,
    **_CACHING,
    "messages": _modelled(
        "the prompt: text, names, tool calls; images by the tile rule, audio; files see pricing"
    ),
    "tools": _modelled("the prompt: definitions by their JSON"),
    "tool_choice": _modelled("the prompt: a named tool by its JSON"),
    "functions": _modelled("the prompt: definitions by their JSON"),
    "function_call": _modelled("the prompt: a named function by its JSON"),
    "response_format": _modelled("the prompt: a json_schema by its JSON"),
    "max_completion_tokens": _modelled(_LIMIT),
    "max_tokens": _modelled(_LIMIT),
    "modalities": _modelled(
        "audio output is reserved at the model's audio_output price, or refused without one"
    ),
    "audio": _modelled("voice and format of audio output (see modalities)"),
    "logprobs": _neutral("returns more detail about the same tokens"),
    "top_logprobs": _neutral("returns more detail about the same tokens"),
    "parallel_tool_calls": _neutral("tool calls are output, bounded by the limit"),
    "reasoning_effort": _neutral("reasoning tokens are inside max_completion_tokens"),
    "verbosity": _neutral("the completion limit still bounds the output"),
    "store": _neutral("stored completions are not billed"),
    "user_security_context": _neutral("Azure: identifies the end user to Defender; billed nothing"),
    "service_tier": _pricing("see pricing: the tier's price, or refused"),
    "web_search_options": _pricing(
        "see pricing: refused, its per-search fee is not modelled on chat (use Responses)"
    ),
    "prediction": _refused(
        "rejected prediction tokens are billed as output the completion limit does not bound"
    ),
    "moderation": _refused("runs a moderation model the policy has no price for"),
    "data_sources": _refused(
        "Azure On Your Data adds retrieved documents the proxy cannot see to the prompt"
    ),
}

COMPLETIONS: dict[str, Field] = {
    **_GENERATION,
    "prompt": _modelled(
        "the prompt; a batch (strings or token lists) multiplies the choices by its length"
    ),
    "suffix": _modelled("the prompt: its tokens, after every prompt of a batch"),
    "max_tokens": _modelled(_LIMIT),
    "echo": _neutral("returns the prompt it already billed"),
    "logprobs": _neutral("returns more detail about the same tokens"),
}

EMBEDDINGS: dict[str, Field] = {
    **_OPENAI_COMMON,
    "input": _modelled("every input's tokens; embeddings have no completion"),
    "dimensions": _neutral("output size only"),
    "encoding_format": _neutral("output encoding only"),
}

RESPONSES: dict[str, Field] = {
    **_OPENAI_COMMON,
    **_CACHING,
    "input": _modelled(
        "the prompt: messages, images by the tile rule, items by their JSON; files see pricing"
    ),
    "instructions": _modelled("the prompt: a system message"),
    "tools": _modelled("the prompt: definitions by their JSON; hosted tools see pricing"),
    "tool_choice": _modelled("the prompt: a named tool by its JSON"),
    "text": _modelled("the prompt: a format's schema by its JSON"),
    "max_output_tokens": _modelled(_LIMIT),
    "stream": _neutral(_STREAM),
    "stream_options": _neutral(_STREAM),
    "include": _neutral("returns more detail about the same call"),
    "parallel_tool_calls": _neutral("tool calls are output, bounded by the limit"),
    "reasoning": _neutral("reasoning tokens are inside max_output_tokens"),
    "store": _neutral("stored responses are not billed (gateway mode sends store: false)"),
    "top_logprobs": _neutral("returns more detail about the same tokens"),
    "truncation": _neutral("can only drop input"),
    "image": _neutral("image context compression can only lower image tokens"),
    "service_tier": _pricing("see pricing: the tier's price, or refused"),
    "max_tool_calls": _pricing("see pricing: bounds hosted tool fees"),
    "prompt": _pricing("see pricing: a stored prompt the proxy cannot see, or refused"),
    "previous_response_id": _refused(
        "the provider adds stored context the proxy cannot see to the prompt; send the earlier "
        "turns in 'input' instead"
    ),
    "conversation": _refused(
        "the provider adds stored context the proxy cannot see to the prompt; send the earlier "
        "turns in 'input' instead"
    ),
    "background": _refused(
        "the usage comes after the answer, from a stored response the proxy never sees",
        False,
    ),
    "background_options": _refused("background execution (see background)"),
    "context_management": _refused("compaction runs passes the reservation does not cover"),
    "moderation": _refused("runs a moderation model the policy has no price for"),
    "access_programs": _refused(
        "access programs other than standard have no price in the policy", {"cyber": "standard"}
    ),
}

_CONTAINER: dict[str, Field] = {
    "id": _neutral("reuses the code execution tool's container, which tools prices"),
    "skills": _refused(
        "Agent Skills add each skill's description to the system prompt and load its files as "
        "code execution input the proxy cannot see",
        [],
    ),
}
"""Fields of a Messages `container` object (a container id may also be sent as a string)."""

MESSAGES: dict[str, Field] = {
    "model": _modelled("the model's price entry; the prompt × its tokenizer_factor"),
    "messages": _modelled(
        "the prompt: text, images (at any depth), tool use and results; documents and "
        "cache_control (at any depth) see pricing"
    ),
    "system": _modelled("the prompt: a system turn; its cache_control see pricing"),
    "tools": _modelled(
        "the prompt: definitions by their JSON, the model's tool_prompt_tokens once, and each "
        "client tool's client_tool_tokens (a type without them is refused); server tools see "
        "pricing"
    ),
    "tool_choice": _modelled("the prompt: a named tool by its JSON"),
    "output_config": _modelled("the prompt: a format's schema by its JSON; effort stays in limit"),
    "max_tokens": _modelled(_LIMIT),
    "metadata": _neutral(_ID),
    "stop_sequences": _neutral("can only end the output sooner"),
    "stream": _neutral(_STREAM),
    "temperature": _neutral(_SAMPLING),
    "top_k": _neutral(_SAMPLING),
    "top_p": _neutral(_SAMPLING),
    "thinking": _neutral("thinking tokens count toward max_tokens"),
    "diagnostics": _neutral("returns more detail about the same call"),
    "container": Field("neutral", _CONTAINER["id"].note, inner=_CONTAINER),
    "billing_policy": _neutral("can only move the bill off the provider account"),
    "fallback_credit_token": _neutral("can only lower the price of cache writes"),
    "service_tier": _pricing("see pricing: the tier's price, or refused"),
    "cache_control": _pricing(
        "see pricing: the prompt at the write price of the longest TTL asked anywhere in the "
        "body (cache_write, or the one-hour price for ttl 1h); refused without cache_write"
    ),
    "inference_geo": _refused("US-only inference is billed at a premium", "global"),
    "speed": _refused("fast mode is billed at a premium", "standard"),
    "mcp_servers": _refused("remote MCP tools call the model again, past what max_tokens bounds"),
    "context_management": _refused("compaction runs passes the reservation does not cover"),
    "compaction": _refused("a compaction request summarises on terms the proxy does not model"),
    "fallbacks": _refused("a substitute model the call was not priced at may answer"),
    "thread": _refused("server-held conversation state adds context the proxy cannot see"),
}

FIELDS: Mapping[EndpointName, Mapping[str, Field]] = {
    "chat": CHAT,
    "completions": COMPLETIONS,
    "embeddings": EMBEDDINGS,
    "responses": RESPONSES,
    "messages": MESSAGES,
}
"""Every field of each budgeted endpoint's request, by class."""

API_NAMES: Mapping[EndpointName, str] = {
    "chat": "Chat Completions",
    "completions": "Completions",
    "embeddings": "Embeddings",
    "responses": "Responses",
    "messages": "Messages",
}


def check_fields(body: Mapping[str, Any], endpoint: EndpointName, mode: RequestFields) -> None:
    """400 `unpriced_feature` for the first field of `body` the proxy cannot reserve for: a
    refused one, or one the table does not list; with `mode` forward, none. Fields priced by the
    policy are left to the pricing code."""
    if mode == "forward":
        return
    table = FIELDS[endpoint]
    for name, value in body.items():
        if value is None:
            continue
        field = table.get(name)
        if field is None:
            raise _unknown(name, endpoint)
        _check_field(name, field, value, endpoint)


def _check_field(name: str, field: Field, value: object, endpoint: EndpointName) -> None:
    if field.kind == "refused" and not _asks_nothing(field, value):
        raise refused_error(name, field)
    if field.inner is None or not isinstance(value, dict):
        return
    for key, inner_value in value.items():
        inner = field.inner.get(key)
        if inner_value is None:
            continue
        if inner is None:
            raise _unknown(f"{name}.{key}", endpoint)
        _check_field(f"{name}.{key}", inner, inner_value, endpoint)


def _asks_nothing(field: Field, value: object) -> bool:
    return any(
        type(value) is type(harmless) and value == harmless for harmless in field.asks_nothing
    )


def _unknown(name: str, endpoint: EndpointName) -> BadRequest:
    return BadRequest(
        f"'{name}' is not a field of the {API_NAMES[endpoint]} API that this proxy knows, so it "
        "cannot tell what the call would cost. Leave it out, or ask the operator to set "
        "`request_fields: forward` in the policy to forward fields it does not know.",
        code="unpriced_feature",
        param=name,
    )


def refused_error(name: str, field: Field, what: str = "") -> BadRequest:
    """The 400 for the refused field `name` (a path below the request for a message's field or
    an input item, which `what` may describe)."""
    return BadRequest(
        f"'{name}'{what} is billed in a way this proxy cannot reserve for ({field.note}). Leave "
        "it out, or ask the operator to set `request_fields: forward` in the policy to forward "
        "it unbudgeted.",
        code="unpriced_feature",
        param=name,
    )
