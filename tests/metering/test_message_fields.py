"""The closed world one level down (proxy/metering/message_fields.py): every field of a message,
and every type of a Responses input item, is modelled, neutral or refused, and one the tables do
not list is refused with 400 `unpriced_feature` naming where it is, unless the policy says
`request_fields: forward`. The tables cover what the installed openai and anthropic SDKs can
send, and the README shows them."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest

from proxy.core.errors import BadRequest
from proxy.metering.estimate import EndpointName
from proxy.metering.message_fields import ENTRIES, RESPONSES_ITEMS, check_entries

ROOT = Path(__file__).resolve().parents[2]
CLASS_NAMES = {
    "modelled": "cost-bearing, modelled",
    "neutral": "cost-neutral",
    "refused": "cost-bearing, refused",
}
HEADINGS: dict[EndpointName, str] = {
    "chat": "`/v1/chat/completions`: fields of each of `messages`",
    "responses": "`/v1/responses`: fields of each message of `input`",
    "messages": "`/v1/messages`: fields of each of `messages`",
}

PART_HEADINGS: dict[EndpointName, str] = {
    "chat": "`/v1/chat/completions`: types of the parts of a message's `content`",
    "responses": "`/v1/responses`: types of the parts of a message's `content`",
    "messages": "`/v1/messages`: types of the blocks of a message's `content`",
}


def _typed_dict_keys(params: Any) -> set[str]:
    """Every key of a TypedDict, or of each TypedDict of a Union of them."""
    members = typing.get_args(params) or (params,)
    return {key for member in members for key in typing.get_type_hints(member)}


def _literal_types(params: Any) -> set[str]:
    """The `type` literals of each TypedDict of a Union (an item without one is a message)."""
    found: set[str] = set()
    for member in typing.get_args(params):
        hint = typing.get_type_hints(member, include_extras=True).get("type")
        stack = [hint]
        while stack:
            node = stack.pop()
            if typing.get_origin(node) is typing.Literal:
                found.update(typing.get_args(node))
            else:
                stack += typing.get_args(node)
    return found


def test_the_tables_cover_every_message_field_and_item_type_the_sdks_send() -> None:
    """A new message field or input item type in the openai or anthropic SDK must be classified
    before it can pass."""
    from anthropic.types import MessageParam
    from openai.types.chat import ChatCompletionMessageParam
    from openai.types.responses import EasyInputMessageParam, ResponseInputItemParam
    from openai.types.responses.response_input_item_param import Message
    from openai.types.responses.response_output_message_param import ResponseOutputMessageParam

    chat = _typed_dict_keys(ChatCompletionMessageParam)
    responses = _typed_dict_keys(
        typing.Union[EasyInputMessageParam, Message, ResponseOutputMessageParam]  # noqa: UP007
    )
    where = "proxy/metering/message_fields.py"
    assert not chat - set(ENTRIES["chat"].fields), f"classify {chat - set(ENTRIES['chat'].fields)}"
    missing = responses - set(ENTRIES["responses"].fields)
    assert not missing, f"classify {sorted(missing)} in {where}"
    kinds = _literal_types(ResponseInputItemParam)
    assert not kinds - set(RESPONSES_ITEMS), f"classify {sorted(kinds - set(RESPONSES_ITEMS))}"
    anthropic = _typed_dict_keys(MessageParam)
    assert anthropic == set(ENTRIES["messages"].fields)


def test_the_part_tables_are_the_sdks_part_types() -> None:
    """Every content part type the SDKs send is classified, and none besides: a part of another
    API's type (an `input_image` in a chat message) is one the upstream may bill as an image."""
    from anthropic.types import ContentBlockParam
    from openai.types.chat import ChatCompletionContentPartParam
    from openai.types.chat.chat_completion_assistant_message_param import (
        ContentArrayOfContentPart,
    )
    from openai.types.responses.response_input_message_content_list_param import (
        ResponseInputContentParam,
    )
    from openai.types.responses.response_output_message_param import Content

    chat = _literal_types(ChatCompletionContentPartParam) | _literal_types(
        ContentArrayOfContentPart
    )
    responses = _literal_types(ResponseInputContentParam) | _literal_types(Content)
    assert set(ENTRIES["chat"].parts) == chat
    assert set(ENTRIES["responses"].parts) == responses
    assert set(ENTRIES["messages"].parts) == _literal_types(ContentBlockParam)


HI = {"role": "user", "content": "hi"}
REFUSED_ENTRIES: list[tuple[EndpointName, dict[str, Any], str]] = [
    ("chat", {"messages": [{**HI, "turbo": 1}]}, "messages[0].turbo"),
    ("chat", {"messages": [HI, {"role": "assistant", "audio": {"id": "a"}}]}, "messages[1].audio"),
    ("responses", {"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ("responses", {"input": [{"type": "teleport", "to": "x"}]}, "input[0]"),
    ("responses", {"input": [{**HI, "extra": "x"}]}, "input[0].extra"),
    ("messages", {"messages": [{**HI, "cache": True}]}, "messages[0].cache"),
    (
        "chat",
        {"messages": [{**HI, "content": [{"type": "input_image"}]}]},
        "messages[0].content[0]",
    ),
    (
        "responses",
        {"input": [HI, {**HI, "content": [{"type": "input_text"}, {"type": "image_url"}]}]},
        "input[1].content[1]",
    ),
    (
        "messages",
        {"messages": [{**HI, "content": [{"type": "image_url"}]}]},
        "messages[0].content[0]",
    ),
]
"""A message field, content part type or input item type each table refuses or does not list,
and where it is."""


@pytest.mark.parametrize(("endpoint", "body", "param"), REFUSED_ENTRIES)
def test_an_unknown_or_refused_entry_is_unpriced_feature_naming_where_it_is(
    endpoint: EndpointName, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        check_entries(body, endpoint, "strict")
    assert raised.value.code == "unpriced_feature" and raised.value.param == param
    assert param in raised.value.message and "request_fields: forward" in raised.value.message
    check_entries(body, endpoint, "forward")


def test_known_entries_and_null_fields_pass() -> None:
    messages = [
        {"role": "developer", "content": "Be terse.", "name": "ops"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None, "refusal": "No.", "audio": None},
        {"role": "assistant", "tool_calls": [], "reasoning_content": "Thinking."},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    check_entries({"messages": messages}, "chat", "strict")
    items = [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "phase": "final_answer", "content": [{"type": "output_text", "text": "Hi."}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "anything": 1},
        {"type": "function_call_output", "call_id": "c", "output": "42"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"},
    ]  # fmt: skip
    check_entries({"input": items}, "responses", "strict")
    check_entries({"messages": [{"role": "user", "content": "hi"}]}, "messages", "strict")


# -- the README's tables ---------------------------------------------------------------------


def readme_tables() -> str:
    """The README's rendering of ENTRIES: per endpoint, each message field with its class and
    note; for Responses, the input item types too."""
    out = []
    for endpoint, entries in ENTRIES.items():
        out += [f"**{HEADINGS[endpoint]}**", "", "| field | class | what is reserved, or why not |"]
        out.append("|---|---|---|")
        out += [
            f"| `{name}` | {CLASS_NAMES[f.kind]} | {f.note} |" for name, f in entries.fields.items()
        ]
        out.append("")
        out += [f"**{PART_HEADINGS[endpoint]}**", "", "| type | class | what is reserved |"]
        out.append("|---|---|---|")
        out += [f"| `{k}` | {CLASS_NAMES[f.kind]} | {f.note} |" for k, f in entries.parts.items()]
        out.append("")
        if entries.types is not None:
            out += ["**`/v1/responses`: types of the items of `input`**", ""]
            out += ["| type | class | what is reserved, or why not |", "|---|---|---|"]
            modelled = [k for k, f in entries.types.items() if f.kind == "modelled"]
            json_counted = [k for k in modelled if k != "message"]
            [note] = {entries.types[k].note for k in json_counted}
            out.append(
                f"| `message` | {CLASS_NAMES['modelled']} | {entries.types['message'].note} |"
            )
            listed = ", ".join(f"`{k}`" for k in json_counted)
            out.append(f"| {listed} | {CLASS_NAMES['modelled']} | {note} |")
            out += [
                f"| `{k}` | {CLASS_NAMES[f.kind]} | {f.note} |"
                for k, f in entries.types.items()
                if f.kind == "refused"
            ]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def test_the_readme_tables_are_the_code_tables() -> None:
    readme = (ROOT / "README.md").read_text()
    begin = "<!-- message-fields:begin -->\n"
    start = readme.index(begin) + len(begin)
    end = readme.index("<!-- message-fields:end -->")
    assert readme[start:end] == readme_tables(), "README.md: replace the tables with\n" + (
        readme_tables()
    )
