"""The closed world one level down: the fields of each message, and the types of each Responses
input item, in the classes of request_fields.py. No I/O.

A message is billed for more than its content: OpenAI counts every string field of a chat message
(the cookbook's `num_tokens_from_messages`), so an assistant turn's `refusal` costs its tokens, and
an `audio` reference makes the provider add an earlier spoken answer the proxy never saw. So the
fields of a message, like those of a request, are modelled (counted by the estimate), neutral, or
refused; a field or an item type the tables do not list is refused too, with `request_fields:
strict`, naming where it is (`messages[2].audio`). With `forward` they pass, and the estimate
counts what it does not model by its JSON. The README's tables "Inside a request" are these ones,
kept equal by tests/metering/test_message_fields.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.core.errors import BadRequest
from proxy.metering.estimate import EndpointName
from proxy.metering.request_fields import API_NAMES, Field, RequestFields, refused_error


def _modelled(note: str) -> Field:
    return Field("modelled", note)


def _neutral(note: str) -> Field:
    return Field("neutral", note)


def _refused(note: str) -> Field:
    return Field("refused", note)


_TEXT = "its tokens"
_ITEM_JSON = (
    "the prompt: each by its JSON, but the images in it by the tile rule; files see pricing"
)
_STORED = "the provider adds a stored item the proxy cannot see to the prompt; send the item itself"

CHAT_MESSAGE: dict[str, Field] = {
    "role": _modelled("its tokens, and the 3 tokens every message costs"),
    "content": _modelled("text; images by the tile rule; audio by its duration; files see pricing"),
    "name": _modelled("its tokens and 1 more"),
    "tool_call_id": _modelled(_TEXT),
    "tool_calls": _modelled("each call's name and arguments"),
    "function_call": _modelled("its name and arguments"),
    "refusal": _modelled(f"an earlier refusal: {_TEXT}"),
    "reasoning_content": _modelled(f"DeepSeek, vLLM: earlier reasoning sent back, {_TEXT}"),
    "audio": _refused(
        "an earlier audio answer by id: the provider bills its audio as input the proxy cannot "
        "see; send its transcript as the message's content instead"
    ),
}
"""Fields of a chat message (any role)."""

RESPONSES_MESSAGE: dict[str, Field] = {
    "role": _modelled("its tokens, and the 3 tokens every message costs"),
    "content": _modelled("text; images by the tile rule; other parts by their JSON"),
    "type": _neutral("always message"),
    "id": _neutral("an earlier output's id; billed nothing"),
    "status": _neutral("an earlier output's status; billed nothing"),
    "phase": _neutral("commentary or final answer; billed nothing"),
}
"""Fields of a Responses `input` item of type message."""

_ITEM_TYPES = (
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "reasoning",
    "compaction",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "code_interpreter_call",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "tool_search_call",
    "tool_search_output",
    "configuration_update",
    "program",
    "program_output",
)

RESPONSES_ITEMS: dict[str, Field] = {
    "message": _modelled("the prompt: its fields, as the table of message fields says"),
    **{kind: _modelled(_ITEM_JSON) for kind in _ITEM_TYPES},
    "item_reference": _refused(_STORED),
    "compaction_trigger": _refused("compaction runs a pass the reservation does not cover"),
    "additional_tools": _refused(
        "adds tools mid-input, and hosted tools are priced only from 'tools'; declare them there"
    ),
}
"""Types of a Responses `input` item (an item without a type is a message)."""

ANTHROPIC_MESSAGE: dict[str, Field] = {
    "role": _modelled("its tokens, and the tokens every turn costs"),
    "content": _modelled(
        "text, images, tool use and results; documents and cache_control see pricing"
    ),
}
"""Fields of a Messages API message."""

_JSON = "its JSON"
_DOCUMENT = "a document: see pricing (`documents`)"

CHAT_PARTS: dict[str, Field] = {
    "text": _modelled(_TEXT),
    "image_url": _modelled("the tile rule times the model's image factor"),
    "input_audio": _modelled(
        "an mp3: its base64 length; a PCM WAV: its duration (10 tokens a second) if more; any "
        "other audio, or a WAV whose header gives no duration, is refused"
    ),
    "file": _modelled(_DOCUMENT),
    "refusal": _modelled(f"an earlier refusal: {_JSON}"),
}
"""Types of the parts of a chat message's `content`."""

RESPONSES_PARTS: dict[str, Field] = {
    "input_text": _modelled(_TEXT),
    "output_text": _modelled(f"an earlier answer: {_TEXT}"),
    "input_image": _modelled("the tile rule times the model's image factor"),
    "input_file": _modelled(_DOCUMENT),
    "refusal": _modelled(f"an earlier refusal: {_JSON}"),
}
"""Types of the parts of a Responses message's `content`."""

ANTHROPIC_PARTS: dict[str, Field] = {
    "text": _modelled(_TEXT),
    "image": _modelled("Claude's image rule"),
    "document": _modelled(_DOCUMENT),
    "search_result": _modelled(f"{_JSON}, the images and documents in it by their rules"),
    "tool_use": _modelled(_JSON),
    "tool_result": _modelled(f"{_JSON}, the images and documents in it by their rules"),
    **{
        kind: _modelled(f"an earlier turn's block: {_JSON}")
        for kind in (
            "thinking",
            "redacted_thinking",
            "server_tool_use",
            "web_search_tool_result",
            "web_fetch_tool_result",
            "code_execution_tool_result",
            "bash_code_execution_tool_result",
            "text_editor_code_execution_tool_result",
            "tool_search_tool_result",
            "container_upload",
        )
    },
}
"""Types of the content blocks of a Messages API message."""


@dataclass(frozen=True, slots=True)
class Entries:
    """The entries of a list field of the request: objects whose fields `fields` lists, or
    (with `types`) objects whose `type` it lists, those of type message having `fields`; the
    parts of a message's `content` list have a type `parts` lists. (A part of a type the API
    does not have may still be one the upstream bills: an `input_image` in a chat message is
    an image, not the few tokens of its JSON.)"""

    name: str
    fields: Mapping[str, Field]
    parts: Mapping[str, Field]
    types: Mapping[str, Field] | None = None


ENTRIES: Mapping[EndpointName, Entries] = {
    "chat": Entries("messages", CHAT_MESSAGE, CHAT_PARTS),
    "responses": Entries("input", RESPONSES_MESSAGE, RESPONSES_PARTS, RESPONSES_ITEMS),
    "messages": Entries("messages", ANTHROPIC_MESSAGE, ANTHROPIC_PARTS),
}
"""The list fields whose entries are checked, per endpoint."""

ENTRY_NAMES: Mapping[EndpointName, str] = {
    "chat": "chat message",
    "responses": "Responses input message",
    "messages": "Messages API message",
}


def check_entries(body: Mapping[str, Any], endpoint: EndpointName, mode: RequestFields) -> None:
    """400 `unpriced_feature` for the first message field, content part type or input item
    type of `body` the proxy cannot reserve for: a refused one, or one the tables do not list;
    with `mode` forward, none. Entries of the wrong shape are the estimate's to refuse."""
    entries = ENTRIES.get(endpoint)
    listed = body.get(entries.name) if entries is not None and mode == "strict" else None
    if entries is None or not isinstance(listed, list):
        return
    for index, entry in enumerate(listed):
        if isinstance(entry, dict):
            _check_entry(entry, f"{entries.name}[{index}]", entries, endpoint)


def _check_entry(
    entry: Mapping[str, Any], path: str, entries: Entries, endpoint: EndpointName
) -> None:
    if entries.types is not None:
        kind = entry.get("type", "message")
        found = entries.types.get(kind) if isinstance(kind, str) else None
        if found is None:
            raise _unknown_type(path, kind, endpoint)
        if found.kind == "refused":
            raise refused_error(path, found, f" (an input item of type {kind})")
        if kind != "message":
            return  # its JSON is counted whole: no field of it goes uncounted
    for name, value in entry.items():
        if value is None:
            continue
        field = entries.fields.get(name)
        if field is None:
            raise _unknown_field(f"{path}.{name}", endpoint)
        if field.kind == "refused":
            raise refused_error(f"{path}.{name}", field)
    if isinstance(entry.get("content"), list):
        _check_parts(entry["content"], f"{path}.content", entries, endpoint)


def _check_parts(parts: list[Any], path: str, entries: Entries, endpoint: EndpointName) -> None:
    for index, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            continue  # the estimate refuses a part without a type
        found = entries.parts.get(kind)
        if found is None:
            raise _unknown_part(f"{path}[{index}]", kind, endpoint)
        if found.kind == "refused":
            raise refused_error(f"{path}[{index}]", found, f" (a content part of type {kind})")


def _unknown_field(path: str, endpoint: EndpointName) -> BadRequest:
    return BadRequest(
        f"'{path}' is not a field of a {ENTRY_NAMES[endpoint]} that this proxy knows, so it "
        "cannot tell what the call would cost. Leave it out, or ask the operator to set "
        "`request_fields: forward` in the policy to forward fields it does not know.",
        code="unpriced_feature",
        param=path,
    )


def _unknown_part(path: str, kind: str, endpoint: EndpointName) -> BadRequest:
    return BadRequest(
        f"{path} has type {kind!r}, not a content part of a {ENTRY_NAMES[endpoint]} that this "
        "proxy knows, so it cannot tell what the call would cost (a part of another API's "
        "type, such as an image, may still be billed as one). Use the part types of the "
        f"{API_NAMES[endpoint]} API, or ask the operator to set `request_fields: forward` in "
        "the policy to forward parts it does not know.",
        code="unpriced_feature",
        param=path,
    )


def _unknown_type(path: str, kind: object, endpoint: EndpointName) -> BadRequest:
    return BadRequest(
        f"{path} has type {kind!r}, not an input item type of the {API_NAMES[endpoint]} API that "
        "this proxy knows, so it cannot tell what the call would cost. Leave it out, or ask the "
        "operator to set `request_fields: forward` in the policy to forward items it does not "
        "know.",
        code="unpriced_feature",
        param=path,
    )
