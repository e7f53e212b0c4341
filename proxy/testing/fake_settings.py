"""What the fake provider is told (FakeSettings: how much it generates, how slowly, how it fails,
what it reports and bills), and what a real provider says that the proxy must not relay (the
shared account's error bodies and headers) or must (headers about the answer itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeSettings:
    api_key: str = "sk-fake-upstream-0123456789"
    completion_fraction: float = 1.0
    """Share of the completion limit actually generated (per choice)."""
    default_completion: int = 50
    """Tokens generated per choice when the request names no limit."""
    chunks: int = 5
    latency: float = 0.0
    """Seconds a call waits before it answers, before any header is sent (a slow provider):
    whole answers, streams and the model list. Refusals (a wrong key, `fail_status`,
    `fail_every`) answer at once. As a provider does, it bills the whole generation when the
    wait is over, even if the caller gave up and left during it."""
    chunk_delay: float = 0.0
    """Seconds between stream chunks. The fake writes on whether or not the proxy's client is
    still there, and bills the whole generation, as a provider does."""
    fail_status: int | None = None
    """Answer every call (the model list too) with this error status."""
    fail_error: dict[str, Any] | str | None = None
    """The error object those answers carry, OpenAI's shape (`message`, `type`, `param`,
    `code`; on /v1/messages Anthropic's: `type`, `message`), e.g. ACCOUNT_RATE_LIMIT; a string:
    an HTML page instead (a load balancer's); None: a plain server error."""
    fail_every: int = 0
    """Every k-th budgeted call answers 500 (0: never)."""
    send_usage: bool = True
    """Honour stream_options.include_usage (older vLLM and some Azure versions do not); False
    also leaves the usage out of Responses and Messages streams (compatible servers)."""
    reject_stream_options: bool = False
    """Answer 400 to any `stream_options`, as older vLLM and Azure API versions do."""
    continuous_usage: bool = False
    """Chat and completion streams carry a usage object on every chunk, running totals (vLLM's
    continuous usage stats), whether asked or not."""
    cached_tokens: int = 0
    """Prompt tokens reported as read from the cache (chat, Responses, Messages)."""
    cache_write_tokens: int = 0
    """Prompt tokens reported as written to the 5-minute cache (Messages), besides those of
    `cache_control_writes`."""
    cache_control_writes: bool = True
    """Messages: a request's `cache_control` breakpoints write the prompt up to them to the
    cache, as Anthropic's first call with a new prefix does (fake_tokens.claude_cache_writes),
    billed at each breakpoint's TTL and reported in `cache_creation`."""
    cache_ttl_split: bool = True
    """Messages: report cache writes by TTL (`cache_creation`); False: only their total, as
    servers that predate one-hour caches do."""
    cache_split_zeroed: bool = False
    """Messages: report the `cache_creation` split as 0/0 while `cache_creation_input_tokens`
    holds every write, as Anthropic has on web search turns."""
    cache_writes_late: bool = False
    """Messages streams: `message_start` reports no cache writes; the final `message_delta`
    reports them in `cache_creation_input_tokens`, without resending `cache_creation`."""
    openai_cache_write_tokens: int = 0
    """Chat, Responses: prompt tokens written to the prompt cache, billed at the model's write
    price and reported as `cache_write_tokens` (`prompt_tokens_details`, Responses'
    `input_tokens_details`), as OpenAI's newer models do; at most the uncached prompt."""
    reasoning_tokens: int = 0
    """Chat, Responses: output tokens spent reasoning, billed but never streamed."""
    audio_prompt_tokens: int | None = None
    """Chat: prompt tokens reported as audio (`prompt_tokens_details.audio_tokens`); None: those
    of the request's `input_audio` parts (fake_billing.audio_prompt_tokens), as OpenAI does."""
    audio_completion_tokens: int | None = None
    """Chat: completion tokens reported as audio, billed on top of the text; None: when the
    request asks for audio (`modalities`), half of what it generates is audio, within the
    completion (fake_billing.audio_completion_tokens), else none."""
    deployments: dict[str, str] = field(default_factory=dict)
    """Azure: deployment → the model it runs (other deployments are 404)."""
    cut_after: int | None = None
    """End a stream cleanly after this many text deltas (chat and completions: chunks), before
    its usage and `[DONE]`; 0 sends the headers and nothing else."""
    stream_error: dict[str, Any] | None = None
    """With `cut_after`: the error a provider sends in the middle of a stream, written as its
    API writes one where the stream is cut (chat: `data: {"error": ...}`; Messages: `event:
    error` with `{"type": "error", "error": ...}`; Responses: `event: error` with the fields at
    the top), e.g. ACCOUNT_RATE_LIMIT."""
    response_error: dict[str, Any] | str | None = None
    """Every answer fails inside a 200 with this `error` object, billed and reporting its usage
    as usual. Responses: a whole answer has `status: failed` (`response_error_status`) and the
    error, a stream ends with `response.failed` in place of `response.completed`. Chat and
    completions, whole answers: choices ending in `finish_reason: error`, the error at the top
    beside the usage (as OpenRouter answers). A string: every whole answer is this text, not JSON
    (chat, completions, Responses)."""
    response_error_status: str = "failed"
    """Responses: the status of a response with `response_error` (a stream's last event is
    `response.<status>`); some compatible servers fill `error` on an `incomplete` one."""
    response_error_beside: bool = False
    """Responses streams: the failing event also carries `response_error` at its top, beside
    the response's."""
    send_done: bool = True
    """Chat, completions: end a stream with `data: [DONE]`; False: end it right after the usage
    chunk (or the last chunk), as some OpenAI-compatible servers do."""
    underreport_completion: int = 0
    """Chat, completions: completion tokens left out of every usage report (a provider that
    reports less than it generated); `billed` keeps what was generated."""
    hang_up: bool = False
    """Every POST: read the request, wait `latency`, bill as usual, then reset the connection
    instead of answering (a provider that crashed mid-call, or a connection cut after the
    request was written)."""
    account_headers: bool = True
    """Send the headers a real provider sends with every answer: PROVIDER_HEADERS (which
    describe the shared account and must stay behind the proxy) and RELAYED_HEADERS."""
    service_tier: str = "default"
    """Chat, Responses, Messages: the tier a call that asks for `auto`, or names no tier, is
    served at (a call naming a tier is served at it). Answers say the tier served: OpenAI's
    `service_tier` (on every chunk of a chat stream), Anthropic's `usage.service_tier`
    (`standard` for default); `billed` keeps it."""
    hosted_tool_calls: int = 0
    """Responses: the built-in tool calls a response makes (at most its `max_tool_calls`), all
    of the first hosted tool in `tools`, as `<tool>_call` output items (code_interpreter's share
    one container, billed once). Messages: the uses of each web_search / web_fetch server tool
    (at most its `max_uses`), reported in `usage.server_tool_use`. Each use is billed."""
    tool_input_tokens: int = 0
    """Input tokens each hosted tool use adds to the prompt (search results, an MCP call's
    output), billed; on Responses, so does each `mcp` entry's tool list (its `mcp_list_tools`
    item), made or not. A Messages stream reports them in the final `message_delta`, as
    Anthropic does."""
    document_tokens: int = 0
    """Input tokens billed for each document input (fake_tokens.documents) beyond its JSON: the
    pages the provider reads from a file id, a URL or a PDF."""
    chat_best_of: bool = True
    """Chat: generate (and bill) `best_of` candidates per choice set and return `n`, as vLLM
    does; False: ignore `best_of` on chat, as a server that does not take it. Completions always
    take it."""
    tool_rounds: int = 1
    """Responses, whole answers: a request with function tools is answered with a call to the
    first one while its input holds fewer than this many `function_call_output` items, then
    with text (an agent loop of this many tool calls, each round billed as usual). The call's
    arguments fill the tool's required string properties (fake_shapes.call_arguments)."""
    long_context_above: int = 200_000
    """A prompt above this many tokens is billed at long-context prices (`billed`). On Messages
    such a prompt needs an `anthropic-beta: context-1m-…` header, else it is refused (400)."""


ACCOUNT_RATE_LIMIT = {
    "message": "Rate limit reached for gpt-4o in organization org-fake-shared-account on tokens "
    "per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in 2s. Visit "
    "https://platform.openai.com/account/rate-limits to learn more.",
    "type": "tokens",
    "param": None,
    "code": "rate_limit_exceeded",
}
"""OpenAI's 429 for the account's own limit (a `fail_error`): it names the organisation every
tenant shares and that account's limit and usage, which must stay behind the proxy."""


ANTHROPIC_RATE_LIMIT = {
    "type": "rate_limit_error",
    "message": "This request would exceed the rate limit for your organization "
    "(5d2c1a7e-0b9f-4c3e-9d1a-fake00shared) of 40,000 input tokens per minute. For details, "
    "refer to: https://docs.claude.com/en/api/rate-limits.",
}
"""Anthropic's 429 for the account's limit, as a `fail_error` on /v1/messages."""


PROVIDER_HEADERS = {
    "openai-organization": "org-fake-shared-account",
    "openai-project": "proj_fake_shared",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "2ms",
}
"""What OpenAI says about the account every tenant shares: its organisation, project and rate
limits. The proxy must not relay them."""


RELAYED_HEADERS = {"openai-version": "2020-10-01", "openai-processing-ms": "42"}
"""Headers about the answer itself, which the proxy relays (and `x-request-id: req_…`, new on
every answer, which the proxy replaces with the call's own request id)."""
