"""What the fake provider answers on the Responses and Messages APIs: whole bodies and the SSE
events of a stream, with the real event names and shapes. Usage is whatever `Billed` says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from proxy.testing.fake_openai import written

if TYPE_CHECKING:
    from proxy.testing.fake_openai import Billed


def pieces(text_tokens: int, chunks: int, word: str) -> list[str]:
    """`text_tokens` words split into about `chunks` deltas."""
    count = max(1, min(chunks, text_tokens or 1))
    return [
        word * (text_tokens // count + (1 if i < text_tokens % count else 0)) for i in range(count)
    ]


Event = tuple[str, bytes]
"""An event's name and its bytes on the wire."""

DELTAS = frozenset({"response.output_text.delta", "content_block_delta"})
"""The events that carry generated text."""


def sse(kind: str, data: dict[str, Any]) -> Event:
    return kind, b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- OpenAI Responses ---------------------------------------------------------------------------


def responses_usage(billed: Billed) -> dict[str, Any]:
    return {
        "input_tokens": billed.prompt_tokens,
        "input_tokens_details": {"cached_tokens": billed.cached_tokens, **written(billed)},
        "output_tokens": billed.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": billed.reasoning_tokens},
        "total_tokens": billed.prompt_tokens + billed.completion_tokens,
    }


def tool_item(tool: str, index: int) -> dict[str, Any]:
    """The output item of a hosted tool's call, as the Responses API reports it."""
    item: dict[str, Any] = {"type": f"{tool}_call", "id": f"{tool[:2]}_fake_{index}"}
    item["status"] = "completed"
    if tool == "web_search":
        item["action"] = {"type": "search", "query": f"fake query {index}"}
    elif tool == "code_interpreter":
        item.update(code="print(1)", container_id="cntr_fake", outputs=None)
    elif tool == "file_search":
        item.update(queries=[f"fake query {index}"], results=None)
    elif tool == "image_generation":
        item["result"] = ""
    elif tool == "mcp":
        item.update(server_label="fake", name="lookup", arguments="{}", output="fake", error=None)
    return item


def client_search_call() -> dict[str, Any]:
    """The output item of a tool search the client is to run (`execution: client`): the client
    answers it with a `tool_search_output` item, the provider bills it no fee."""
    return {
        "type": "tool_search_call",
        "id": "ts_fake",
        "call_id": "call_ts_fake",
        "execution": "client",
        "arguments": {"query": "fake query"},
        "status": "completed",
    }


def mcp_list_tools(tool: dict[str, Any], index: int) -> dict[str, Any]:
    """The output item of the tool list an `mcp` tool's server gives (imported into the
    prompt before the model runs)."""
    listed = {"name": "lookup", "input_schema": {"type": "object"}, "description": "Look it up."}
    return {
        "type": "mcp_list_tools",
        "id": f"mcpl_fake_{index}",
        "server_label": tool.get("server_label", "fake"),
        "tools": [listed],
        "error": None,
    }


def response(
    body: dict[str, Any],
    text: str | None,
    billed: Billed | None,
    status: str = "completed",
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A response object; `text` None is the empty output of `response.created`. `tools`: the
    hosted tool calls' output items, which come before the message."""
    output = list(tools or ())
    if text is not None:
        part = {"type": "output_text", "text": text, "annotations": []}
        output.append(_message_item(status, [part]))
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": {},
        "store": body.get("store", True),
        "service_tier": body.get("service_tier", "auto") if billed is None else billed.service_tier,
        "usage": responses_usage(billed) if billed is not None else None,
    }


def function_call(body: dict[str, Any], rounds: int = 1) -> dict[str, Any] | None:
    """A whole response to a request with function tools (in `tools`, or in a namespace there)
    calls the first one while the input carries fewer than `rounds` calls' outputs: enough for
    an agent loop to run. Its arguments fill the tool's required string properties
    (`call_arguments`)."""
    functions = _functions(body.get("tools"), None)
    given = body.get("input")
    items = given if isinstance(given, list) else []
    done = sum(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
    if not functions or done >= rounds:
        return None
    function, namespace = functions[0]
    suffix = "" if done == 0 else f"_{done + 1}"
    call = {
        "type": "function_call",
        "id": "fc_fake" + suffix,
        "call_id": "call_fake" + suffix,
        "name": function.get("name"),
        "arguments": orjson.dumps(call_arguments(function.get("parameters"))).decode(),
        "status": "completed",
    }
    return call if namespace is None else {**call, "namespace": namespace}


def call_arguments(schema: Any) -> dict[str, str]:
    """Arguments a JSON schema accepts: each required string property its string default, else a
    fixed string ("x@example.com" for one named like an email, else "x"); nothing else."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties")
    required = schema.get("required")
    if not isinstance(properties, dict) or not isinstance(required, list):
        return {}
    strings = {
        name: properties[name]
        for name in required
        if isinstance(name, str)
        and isinstance(properties.get(name), dict)
        and properties[name].get("type") == "string"
    }
    return {name: _string(name, spec.get("default")) for name, spec in strings.items()}


def _string(name: str, default: Any) -> str:
    if isinstance(default, str):
        return default
    return "x@example.com" if _emailish(name) else "x"


def _emailish(name: str) -> bool:
    return "mail" in name.lower() or name.lower() in ("to", "cc", "bcc", "recipient")


def _functions(tools: Any, namespace: Any) -> list[tuple[dict[str, Any], Any]]:
    """The function tools of `tools`, each with the name of the namespace it is in (None)."""
    found: list[tuple[dict[str, Any], Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            found.append((tool, namespace))
        elif kind == "namespace":
            found += _functions(tool.get("tools"), tool.get("name"))
    return found


def responses_events(
    body: dict[str, Any], billed: Billed, deltas: list[str], tools: list[dict[str, Any]]
) -> Iterator[Event]:
    seq = iter(range(1 << 30))
    created = response(body, None, None, "in_progress")
    yield _event("response.created", seq, response=created)
    for index, tool in enumerate(tools):
        for kind in ("response.output_item.added", "response.output_item.done"):
            yield _event(kind, seq, output_index=index, item=tool)
    yield from _message_events(seq, len(tools), deltas)
    text = "".join(deltas)
    yield _event("response.completed", seq, response=response(body, text, billed, tools=tools))


def _message_events(seq: Iterator[int], at: int, deltas: list[str]) -> Iterator[Event]:
    """The message output item at `at`: added, its text part and the part's deltas, done."""
    item = _message_item("in_progress", [])
    where = {"item_id": item["id"], "output_index": at}
    yield _event("response.output_item.added", seq, output_index=at, item=item)
    empty = {"type": "output_text", "text": "", "annotations": []}
    yield _event("response.content_part.added", seq, **where, content_index=0, part=empty)
    for delta in deltas:
        yield _event(
            "response.output_text.delta",
            seq,
            **where,
            content_index=0,
            delta=delta,
            logprobs=[],
        )
    text = "".join(deltas)
    yield _event("response.output_text.done", seq, **where, content_index=0, text=text, logprobs=[])
    done = {"type": "output_text", "text": text, "annotations": []}
    yield _event("response.content_part.done", seq, **where, content_index=0, part=done)
    completed = _message_item("completed", [done])
    yield _event("response.output_item.done", seq, output_index=at, item=completed)


def _event(kind: str, seq: Iterator[int], **fields: Any) -> Event:
    """A Responses stream event: its type, its sequence number, then `fields`, in that order."""
    return sse(kind, {"type": kind, "sequence_number": next(seq), **fields})


def failing(
    events: Iterator[Event], error: dict[str, Any], status: str = "failed", *, beside: bool = False
) -> Iterator[Event]:
    """A Responses stream that fails: its `response.completed` becomes `response.<status>`, the
    response's status `status` and its `error` set (usage stays: the provider bills it); with
    `beside`, the event has the error at its top too."""
    for kind, event in events:
        if kind != "response.completed":
            yield kind, event
            continue
        data = orjson.loads(event.split(b"data: ", 1)[1])
        data["response"].update(status=status, error=error)
        data["type"] = f"response.{status}"
        if beside:
            data["error"] = error
        yield sse(data["type"], data)


def without_usage(events: Iterator[Event]) -> Iterator[Event]:
    """A Responses or Messages stream with no usage report in any event, as some compatible
    servers send them (the provider still bills the call)."""
    for kind, event in events:
        data = orjson.loads(event.split(b"data: ", 1)[1])
        held = data.get("response") or data.get("message") or {}
        for holder in (data, held):
            holder.pop("usage", None)
        yield sse(kind, data)


def _message_item(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


# -- Anthropic Messages -------------------------------------------------------------------------


def anthropic_usage(billed: Billed, output_tokens: int | None = None) -> dict[str, Any]:
    """The usage of a whole message; with `output_tokens`, the one `message_start` carries,
    before any server tool ran (its results are not yet input), and, with `cache_writes_late`,
    before its cache writes were counted."""
    written = billed.cache_write_tokens + billed.cache_write_1h_tokens
    fresh = billed.prompt_tokens - billed.cached_tokens - written
    late = billed.cache_writes_late and output_tokens is not None
    usage: dict[str, Any] = {
        "input_tokens": fresh if output_tokens is None else fresh - billed.tool_input_tokens,
        "cache_creation_input_tokens": 0 if late else written,
        "cache_read_input_tokens": billed.cached_tokens,
        "output_tokens": billed.completion_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard" if billed.service_tier == "default" else billed.service_tier,
    }
    if billed.cache_split_reported:
        unsplit = late or billed.cache_split_zeroed
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": 0 if unsplit else billed.cache_write_tokens,
            "ephemeral_1h_input_tokens": 0 if unsplit else billed.cache_write_1h_tokens,
        }
    if billed.tool_calls and output_tokens is None:
        usage["server_tool_use"] = {f"{t}_requests": n for t, n in billed.tool_calls.items()}
    return usage


def _server_tool_blocks(billed: Billed) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for tool, uses in billed.tool_calls.items():
        for i in range(uses):
            ident = f"srvtoolu_fake_{tool}_{i}"
            blocks.append(
                {"type": "server_tool_use", "id": ident, "name": tool, "input": {"query": "q"}}
            )
            blocks.append({"type": f"{tool}_tool_result", "tool_use_id": ident, "content": []})
    return blocks


def message(body: dict[str, Any], text: str | None, billed: Billed) -> dict[str, Any]:
    """A message; `text` None is the empty message of `message_start`."""
    content = [] if text is None else [*_server_tool_blocks(billed), {"type": "text", "text": text}]
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": None if text is None else "max_tokens",
        "stop_sequence": None,
        "usage": anthropic_usage(billed, 1 if text is None else None),
    }


def _final_delta_usage(billed: Billed) -> dict[str, Any]:
    """The usage of the last `message_delta`: the output so far and, once server tools ran,
    the input they grew and their uses, as Anthropic sends them; with `cache_writes_late`, the
    cache writes' total (and no split)."""
    whole = anthropic_usage(billed)
    sent = ["output_tokens"]
    if billed.tool_calls:
        sent += ["input_tokens", "server_tool_use"]
    if billed.cache_writes_late:
        sent.append("cache_creation_input_tokens")
    return {k: whole[k] for k in sent}


def messages_events(body: dict[str, Any], billed: Billed, deltas: list[str]) -> Iterator[Event]:
    start = message(body, None, billed)
    yield sse("message_start", {"type": "message_start", "message": start})
    block = {"type": "text", "text": ""}
    yield sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    yield sse("ping", {"type": "ping"})
    for delta in deltas:
        yield sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": delta},
            },
        )
    yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": _final_delta_usage(billed),
        },
    )
    yield sse("message_stop", {"type": "message_stop"})
