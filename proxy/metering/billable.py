"""What a request may be billed for besides its tokens, read from its body. No I/O. What the
reservation holds for it, and what is refused, is billable_reserve.py.

The proxy can only promise "billed ≤ charged ≤ reserved" for what it prices (DESIGN, "What is
billable: a closed world"), so every billed dimension a request can turn on is read here, and a
model whose policy entry does not price it refuses the call with 400 `unpriced_feature`:

- **Service tier** (`service_tier` on chat, Responses and Messages). `default` (Anthropic:
  `standard_only`) is the model's own price. `auto`, and no tier at all (which both providers
  treat as auto: the account's configured tier), reserve at the dearest tier the model prices,
  since the provider may serve the call at it; any other tier must be priced. The call is
  charged at the tier the answer reports (pricing.py). With `bound: hard`, a call left to auto
  on a model that prices no tier above 1× is sent `service_tier: default` (`standard_only`).
- **Hosted tools**, billed per call. Responses `tools` of type web_search (and
  web_search_preview), file_search, code_interpreter (per container), image_generation, mcp (a
  remote MCP server or connector: no fee, but its calls' output is billed as input), or any
  type not known to be billed by tokens alone, wherever declared (in `tools`, inside a
  `namespace`, loaded by a `tool_search_output` input item: shapes/tool_lists.py; a namespace
  and a tool search the client runs are billed by tokens alone); Anthropic server tools
  (web_search_*, web_fetch_*, code_execution_*, any typed tool not known to run on the
  client). Responses' `max_tool_calls` bounds all built-in tool calls of a response, so that
  many calls of the dearest tool are reserved (code_interpreter: one container besides, and
  its calls count toward the bound for the input each adds); an Anthropic tool's `max_uses`
  bounds its own. Without one the plan's `default_max_tool_calls` is reserved and, with
  `bound: hard`, written into the request. Each call may add the tool's `input_tokens`; each
  `mcp` entry one more, for the server's tool list the provider imports into the prompt.
- **Stored prompts**: a Responses `prompt` (by id) may bring hosted tools the request does not
  show, so it reserves every hosted tool the model prices, pooled under `max_tool_calls`.
- **Documents**: chat `file` parts, Responses `input_file` parts (in a message, a function's
  output, any input item, a stored prompt's variables) and a stored `prompt`, Anthropic
  `document` blocks that are not inline text, at any depth (inside a tool result or a web fetch
  result too). Their JSON (a file id, a URL) says nothing of what the provider bills, so each
  reserves the model's `documents` tokens.
- **Long context**: an `anthropic-beta: context-1m-…` header lets a prompt pass 200K tokens at
  the model's long-context prices, which must be priced.
- **Audio output**: chat `modalities` with "audio", or an `audio` parameter, needs the model's
  `audio_output` price.
- **Chat web search**: `web_search_options` is refused on any model: its per-search fee is not
  modelled (the Responses `web_search` tool is).
- **Tool prompt**: a call that sends tools reserves the model's `tool_prompt_tokens` (Claude's
  tool-use system prompt), once.
- **Client tools**: each Anthropic client tool (bash_*, text_editor_*, computer_*, memory_*)
  adds prompt tokens its JSON does not show (its schema, computer use's own system prompt):
  the model's `client_tool_tokens` for its type, reserved per tool; a type not listed is refused.
- **Cache writes**: Anthropic `cache_control` breakpoints (caching.py) need the model's
  `cache_write`; the prompt is reserved at the longest TTL's write price.
- **Images**: chat `image_url` and Responses `input_image` parts, and the images other
  Responses items carry (a computer-use screenshot, a function's image output, a code
  interpreter's, a generated image sent back: shapes/item_media.py), are counted by gpt-4o's tile
  rule times the model's `image_token_factor` (its policy entry's, or the one OpenAI publishes
  for its name); a model with neither bills images by a rule the proxy does not know, so they
  are refused. (Claude's images on the Messages API are counted by Claude's own rule.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.core.errors import BadRequest
from proxy.metering import caching
from proxy.metering.request_body import describe
from proxy.metering.shapes import blocks, item_media
from proxy.metering.shapes.tool_lists import NAMESPACE, loaded_tools, tool_types

AUTO = "auto"
FREE_RESPONSES_TOOLS = frozenset(
    {"function", "custom", "custom_tool", "computer_use_preview", "computer"}
    | {"local_shell", "shell", "apply_patch"}
)
"""Responses tool types (and `<type>_call` output items) billed by tokens alone: the client's
own functions, and tools the client runs (computer use, shell, patches). Not `mcp`: the
provider runs its calls, each adding its output to the prompt (LISTED)."""
LISTED = "mcp"
"""A hosted tool that imports its server's tool list into the prompt (an `mcp_list_tools` item),
once per tool entry, besides what each of its calls (`mcp_call` items) adds: each entry is one
more `input_tokens` of its price, in `own`."""
CLIENT_ANTHROPIC_TOOLS = frozenset({"bash", "text_editor", "computer", "memory"})
"""Anthropic-defined tools that run on the client, billed by tokens alone: their JSON, and the
prompt tokens each type adds (the model's `client_tool_tokens`; a type it does not list is
refused). `custom` (and an untyped tool) is the client's own, billed by its JSON."""
BOUNDED_BY_MAX_USES = frozenset({"web_search", "web_fetch"})
"""Anthropic server tools that take `max_uses`."""
PER_CONTAINER = "code_interpreter"
"""Billed per container, not per call: one is reserved per call that enables it."""
LONG_CONTEXT_BETA = "context-1m"
INLINE = ("text", "content")
"""Anthropic document sources counted as the text they hold."""
_ANTHROPIC_DATE = re.compile(r"_\d{8}$")
_OPENAI_DATE = re.compile(r"_\d{4}_\d{2}_\d{2}$")


@dataclass(frozen=True, slots=True)
class Billables:
    """What a request turns on that is billed apart from its tokens."""

    tier: str = AUTO
    """The service tier asked for (`auto` when none is)."""
    pooled: tuple[str, ...] = ()
    """Hosted tools whose calls share one bound (Responses' max_tool_calls); code_interpreter's
    calls count toward it (each may add input), though its fee is per container (`own`)."""
    pool: int = 0
    """The calls that bound allows."""
    own: tuple[tuple[str, int], ...] = ()
    """Hosted tools with a bound of their own (Anthropic's max_uses, a code_interpreter
    container, the tool lists of `mcp` entries: LISTED), and that bound."""
    documents: tuple[str, ...] = ()
    """Where each document input is, e.g. `input[0].content[1]`."""
    long_context: str | None = None
    """The beta header that enables long-context prices, if sent."""
    tools: bool = False
    """The request sends tool definitions."""
    client_tools: tuple[str, ...] = ()
    """The types of the Anthropic client tools sent (`bash_20250124`, ...)."""
    tool_types: Mapping[str, str] = field(default_factory=dict)
    """The type each Anthropic server tool was sent as (`web_search` → `web_search_20250305`)."""
    stored_prompt: bool = False
    """A stored Responses prompt is used, which may bring hosted tools of its own: every one
    the model prices is reserved, as if enabled."""
    audio_output: str | None = None
    """The parameter that asks for audio output (chat `modalities` or `audio`), if any."""
    cache_ttl: str | None = None
    """The longest cache TTL a `cache_control` breakpoint asks for (CACHE_TTLS), if any."""
    cache_at: str = ""
    """Where the first `cache_control` breakpoint is, e.g. `system[0].cache_control`."""
    limits: Mapping[str, Any] = field(default_factory=dict)
    """Body changes that bound hosted tool calls, written with bound: hard."""
    images: tuple[str, ...] = ()
    """Where each image input counted by the tile rule is, e.g. `messages[1].content[0]`."""


def read(
    endpoint: str, body: Mapping[str, Any], betas: Sequence[str], default_calls: int
) -> Billables:
    """What `body` (on `endpoint`, sent with the `anthropic-beta` values `betas`) turns on."""
    if endpoint in ("chat", "responses", "messages"):
        check_tools(body.get("tools"), typed=endpoint == "responses")
    if endpoint == "responses":
        return _responses(body, default_calls)
    if endpoint == "messages":
        return _messages(body, betas, default_calls)
    if endpoint == "chat":
        if body.get("web_search_options") is not None:
            raise unpriced(
                "Chat completions' web search ('web_search_options') bills a fee per search that "
                "the proxy does not model. Use the Responses API with the `web_search` tool, "
                "which is priced by the model's `tool_calls`.",
                "web_search_options",
            )
        return Billables(
            tier=_tier(body),
            documents=_parts(body.get("messages"), "messages", "content", _chat_document),
            tools=_has_tools(body),
            audio_output=_chat_audio(body),
            images=tuple(i.path for i in item_media.images(body.get("messages"), "messages")),
        )
    return Billables(tier="default")


ToolCalls = tuple[tuple[str, int], ...]


# -- reading requests ----------------------------------------------------------------------------


def _responses(body: Mapping[str, Any], default_calls: int) -> Billables:
    loaded = loaded_tools(body.get("input"))
    for path, tools in loaded:
        check_tools(tools, typed=True, path=path)
    declared = [body.get("tools"), *(tools for _, tools in loaded)]
    kinds = [kind for tools in declared for kind in tool_types(tools)]
    hosted = [tool for kind in kinds if (tool := responses_tool(kind)) is not None]
    pooled = tuple(dict.fromkeys(hosted))
    own = [(PER_CONTAINER, 1)] if PER_CONTAINER in hosted else []
    if LISTED in hosted:
        own.append((LISTED, hosted.count(LISTED)))
    asked = body.get("max_tool_calls")
    if asked is not None and not is_count(asked):
        raise BadRequest(
            "'max_tool_calls' must be a non-negative integer: the most built-in tool calls the "
            "response may make",
            param="max_tool_calls",
        )
    stored = isinstance(body.get("prompt"), dict) and body["prompt"].get("id") is not None
    limits = {"max_tool_calls": default_calls} if (pooled or stored) and asked is None else {}
    documents, images = _responses_media(body)
    if stored:
        documents = ("prompt", *documents)
    return Billables(
        tier=_tier(body),
        pooled=pooled,
        pool=default_calls if asked is None else asked,
        own=tuple(own),
        documents=documents,
        tools=_has_tools(body),
        limits=limits,
        stored_prompt=stored,
        images=images,
    )


def _responses_media(body: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Where the files and the images are: messages' parts, what other input items carry
    (function outputs, screenshots: item_media.py), a stored prompt's variables."""
    places = (("input", body.get("input")), ("prompt", body.get("prompt")))
    files = tuple(at for path, value in places for at in item_media.files(value, path))
    images = tuple(i.path for path, value in places for i in item_media.images(value, path))
    return files, images


def _messages(body: Mapping[str, Any], betas: Sequence[str], default_calls: int) -> Billables:
    tools = body.get("tools")
    own: list[tuple[str, int]] = []
    written: list[Any] = []
    types: dict[str, str] = {}
    listed = tools if isinstance(tools, list) else []
    for index, tool in enumerate(listed):
        name = _anthropic_tool(tool)
        uses = tool.get("max_uses") if name is not None else None
        if uses is not None and not (is_count(uses) and uses > 0):
            raise BadRequest(
                f"tools[{index}].max_uses must be a positive integer", param=f"tools[{index}]"
            )
        bounded = name in BOUNDED_BY_MAX_USES and uses is None
        written.append({**tool, "max_uses": default_calls} if bounded else tool)
        if name is not None:
            own.append((name, default_calls if uses is None else uses))
            types[name] = tool["type"]
    unbounded = any(w is not t for w, t in zip(written, tools or (), strict=False))
    beta = next((b for b in betas if b.startswith(LONG_CONTEXT_BETA)), None)
    ttl, at = caching.longest_ttl(body)
    return Billables(
        tier=_tier(body),
        own=tuple(own),
        documents=_anthropic_documents(body.get("messages")),
        images=tuple(at for at, _ in blocks.of_type(body.get("messages"), "messages", "image")),
        long_context=beta,
        tools=_has_tools(body),
        client_tools=tuple(kind for tool in listed if (kind := _client_tool(tool)) is not None),
        tool_types=types,
        limits={"tools": written} if unbounded else {},
        cache_ttl=ttl,
        cache_at=at,
    )


def check_tools(tools: Any, *, typed: bool, path: str = "tools") -> None:
    """400 for a tool definition that is not an object, or whose `type` is not a string (with
    `typed`, a Responses tool's, one without a type too): its type is what prices a tool, so a
    tool of a type the proxy cannot read is one it cannot price. An untyped chat tool is a
    function to servers that default it; an untyped Anthropic tool is a custom one. With
    `typed`, the tools of a namespace are checked alike, and its `tools` must be a list."""
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        here = f"{path}[{index}]"
        if not isinstance(tool, dict):
            raise BadRequest(
                f"{here} must be an object: a tool definition with a string 'type', got "
                f"{describe(tool)}",
                param=here,
            )
        kind = tool.get("type")
        if not isinstance(kind, str) and (typed or kind is not None):
            raise BadRequest(
                f"{here}.type must be a string naming the tool's type ('function', "
                f"'web_search', ...), got {describe(kind)}",
                param=f"{here}.type",
            )
        if typed and kind == NAMESPACE:
            _check_namespace(tool.get("tools"), f"{here}.tools")


def _check_namespace(tools: Any, path: str) -> None:
    if not isinstance(tools, list):
        raise BadRequest(
            f"{path} must be an array of the namespace's tool definitions, got {describe(tools)}",
            param=path,
        )
    check_tools(tools, typed=True, path=path)


def _tier(body: Mapping[str, Any]) -> str:
    tier = body.get("service_tier", AUTO)
    if not isinstance(tier, str):
        raise BadRequest(
            "'service_tier' must be a string such as 'default', 'auto' or 'flex'",
            param="service_tier",
        )
    return tier


def responses_tool(kind: str) -> str | None:
    """The tool a Responses tool type (or `<type>_call` item) is priced as; None if free."""
    name = _OPENAI_DATE.sub("", kind).removesuffix("_preview")
    return None if name in FREE_RESPONSES_TOOLS or kind in FREE_RESPONSES_TOOLS else name


def _anthropic_tool(tool: Any) -> str | None:
    """The server tool an Anthropic tool definition is priced as; None for client tools."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(kind, str) or kind == "custom":
        return None
    name = _ANTHROPIC_DATE.sub("", kind)
    return None if name in CLIENT_ANTHROPIC_TOOLS else name


def _client_tool(tool: Any) -> str | None:
    """The type of an Anthropic client tool definition (`bash_20250124`); None for others."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(kind, str) or _ANTHROPIC_DATE.sub("", kind) not in CLIENT_ANTHROPIC_TOOLS:
        return None
    return kind


def _has_tools(body: Mapping[str, Any]) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and bool(tools)


def _parts(items: Any, path: str, key: str, is_document: Any) -> tuple[str, ...]:
    """Where the documents are among `items[i][key][j]` (and one level of nested content:
    tool results, function call outputs)."""
    found: list[str] = []
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if not isinstance(item, dict):
            continue
        name = key if isinstance(item.get(key), list) else "output"
        content = item.get(name)
        for j, part in enumerate(content if isinstance(content, list) else ()):
            here = f"{path}[{i}].{name}[{j}]"
            nested = part.get("content") if isinstance(part, dict) else None
            if is_document(part):
                found.append(here)
            elif isinstance(nested, list):
                found += [f"{here}.content[{k}]" for k, p in enumerate(nested) if is_document(p)]
    return tuple(found)


def _chat_audio(body: Mapping[str, Any]) -> str | None:
    modalities = body.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        return "modalities"
    return "audio" if body.get("audio") is not None else None


def _chat_document(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "file"


def _anthropic_documents(messages: Any) -> tuple[str, ...]:
    """Where the documents are among the messages' blocks, at any depth (a PDF inside a web
    fetch result too). Inline text (or content blocks) is counted like any text; a PDF, a URL or
    a file id is not."""
    return tuple(
        path
        for path, block in blocks.of_type(messages, "messages", "document")
        if not (isinstance(block.get("source"), dict) and block["source"].get("type") in INLINE)
    )


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def unpriced(message: str, param: str | None) -> BadRequest:
    """The 400 for a billed dimension the policy does not price."""
    return BadRequest(message, code="unpriced_feature", param=param)
