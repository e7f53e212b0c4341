"""What the fake provider bills for a prompt: the providers' published counting rules, in code of
the fake's own. Claude's are in fake_claude_tokens.py.

The fake is the tests' referee, so it must not agree with the proxy by construction: nothing here
imports the proxy's estimators, prices or charge code (`proxy.core.encodings` only loads tiktoken's
vocabularies offline). Where a provider publishes a rule the fake follows it; where none is
published the fake bills by a rule written down below that differs from the proxy's estimate,
and the tests check that the proxy's reservation still covers it.

Published rules:

- Encoding: tiktoken's own model table (`tiktoken.model.encoding_name_for_model`); a model it does
  not know (self-hosted ones) counts with cl100k_base. Text is counted with `encode_ordinary`.
- Chat Completions: the OpenAI cookbook, "How to count tokens with tiktoken",
  `num_tokens_from_messages`: 3 tokens per message plus the tokens of each of its string fields
  (role, content, name, ...), 1 more for a `name`, and 3 priming the reply. Content parts: text
  is its tokens; `image_url` is priced by the vision rule below; `input_audio` by its duration.
- Tool and function definitions: the same cookbook, `num_tokens_for_tools`: per function 7 tokens
  (10 on cl100k models: gpt-3.5-turbo, gpt-4) and `name:description` (a final "." dropped); if it
  has properties, 3, then per property 3, `name:type:description`, and with an `enum` −3 plus 3
  and the item's tokens per item; 12 once after the functions.
- Completions and embeddings: each input's plain tokens; a token array counts its ids; a missing
  prompt is `<|endoftext|>`, one token; a completions `suffix` counts its tokens once for each
  prompt of a batch (a list of strings or of token lists).
- Images (OpenAI, "Calculating costs" for vision): `detail: low` is the base; otherwise the image
  is fitted into 2048 × 2048, its short side brought down to 768, and billed the base plus a tile
  price per 512-px tile: 85 + 170 a tile, gpt-4o-mini 2833 + 5667. The fake measures PNG data
  URLs; any other image it bills as the largest the rule allows, 768 × 2048 (8 tiles).
- Audio input: 1 token per 100 ms (OpenAI's Realtime cost guide for user audio), the duration of
  the audio bytes a WAV holds at the byte rate its header gives; audio it cannot read it bills
  nothing for.

Rules of the fake's own, where nothing is published:

- Chat tool calls in assistant messages: the tokens of each call's name and arguments, nothing
  around them. A `tool_choice` or `function_call` naming a function: that name's tokens. A
  `json_schema` response format: the tokens of its `json_schema` object's JSON.
- Responses API: rendered as chat is. `instructions` is a developer message (3 + the role + the
  text), a string `input` a user message, a message item 3 + its role + its content; a
  `function_call` item 3 + its name and arguments, a `function_call_output` (or
  `custom_tool_call_output`) 3 + its output, a text or its parts as a message's are; a
  `computer_call_output` 3 + its JSON without the screenshot, the screenshot an image (above);
  any other item 3 + its JSON; a stored prompt's variables as parts (a string as text); 3 prime
  the reply. Function tools by the cookbook rule, other tools by their JSON; a `text.format` by
  its schema's JSON.
- Documents (a chat `file` part, a Responses `input_file` part or variable, a stored `prompt`,
  an Anthropic `document` block that is not inline text, at any depth of a message): their JSON
  as above; the pages the provider reads from them are the fake upstream's to bill
  (`FakeSettings.document_tokens`), counted by `documents`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import orjson
import tiktoken.model

from proxy.core import encodings
from proxy.testing.fake_claude_tokens import claude_prompt_tokens
from proxy.testing.fake_json import Body, as_dict, as_list, inside, plain, png_size

PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3
FUNCTION_END = 12


@dataclass(frozen=True)
class _Counter:
    enc: Any
    model: str

    def text(self, value: object) -> int:
        return len(self.enc.encode_ordinary(value)) if isinstance(value, str) else 0

    def json(self, value: object) -> int:
        return self.text(orjson.dumps(value).decode())


def prompt_tokens(endpoint: str, body: Body) -> int:
    """The prompt tokens the fake bills for `body` on `endpoint` (chat, completions, embeddings,
    responses, messages)."""
    if endpoint == "messages":
        return claude_prompt_tokens(body)
    model = str(body.get("model"))
    return _OPENAI[endpoint](_Counter(encodings.get_encoding(encoding_name(model)), model), body)


def encoding_name(model: str) -> str:
    """tiktoken's encoding for `model`; cl100k_base for models tiktoken does not know."""
    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return "cl100k_base"
    return name if name in encodings.BUNDLED else "cl100k_base"


def chat_prompt_tokens(body: Body) -> int:
    """The cookbook's count of a chat request: messages, then tool and function definitions."""
    return prompt_tokens("chat", body)


# -- OpenAI --------------------------------------------------------------------------------------


def _chat(c: _Counter, body: Body) -> int:
    messages = [m for m in as_list(body.get("messages")) if isinstance(m, dict)]
    tokens = REPLY_PRIMING + sum(_chat_message(c, m) for m in messages)
    tokens += _tools(c, as_list(body.get("tools")), lambda t: as_dict(t.get("function")))
    tokens += _tools(c, as_list(body.get("functions")), lambda f: f)
    for key in ("tool_choice", "function_call"):
        choice = as_dict(body.get(key))
        tokens += c.text(as_dict(choice.get("function")).get("name") or choice.get("name"))
    response_format = as_dict(body.get("response_format"))
    if response_format.get("type") == "json_schema":
        tokens += c.json(response_format.get("json_schema"))
    return tokens


def _chat_message(c: _Counter, message: Body) -> int:
    tokens = PER_MESSAGE
    for key, value in message.items():
        if isinstance(value, str):
            tokens += c.text(value) + (PER_NAME if key == "name" else 0)
        elif key == "content":
            tokens += sum(_part(c, part) for part in as_list(value))
        elif key == "tool_calls":
            tokens += sum(_call(c, as_dict(call).get("function")) for call in as_list(value))
        elif key == "function_call":
            tokens += _call(c, value)
    return tokens


def _call(c: _Counter, function: object) -> int:
    function = as_dict(function)
    return c.text(function.get("name")) + c.text(function.get("arguments"))


def _part(c: _Counter, part: object) -> int:
    part = as_dict(part)
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text"):
        return c.text(part.get("text"))
    if kind == "refusal":
        return c.text(part.get("refusal"))
    if kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, str):
            return _image(c, image, "auto")
        return _image(c, as_dict(image).get("url"), as_dict(image).get("detail"))
    if kind == "input_image":
        return _image(c, part.get("image_url"), part.get("detail"))
    if kind == "input_audio":
        return audio_tokens(as_dict(part.get("input_audio")).get("data"))
    return c.json(part)


def _tools(c: _Counter, tools: list[Any], function_of: Callable[[Body], Body]) -> int:
    """The cookbook's rule for function definitions; any other definition bills its JSON."""
    tokens, functions = 0, 0
    for tool in tools:
        function = function_of(as_dict(tool))
        if isinstance(function.get("name"), str):
            tokens += _function(c, function)
            functions += 1
        else:
            tokens += c.json(tool)
    return tokens + (FUNCTION_END if functions else 0)


def _function(c: _Counter, function: Body) -> int:
    first = 7 if c.enc.name == "o200k_base" else 10
    description = plain(function.get("description")).removesuffix(".")
    tokens = first + c.text(f"{function['name']}:{description}")
    properties = as_dict(as_dict(function.get("parameters")).get("properties"))
    if properties:
        tokens += 3
    for name, schema in properties.items():
        schema = as_dict(schema)
        tokens += 3
        if "enum" in schema:
            tokens += -3 + sum(3 + c.text(plain(item)) for item in as_list(schema["enum"]))
        kind = plain(schema.get("type"))
        described = plain(schema.get("description")).removesuffix(".")
        tokens += c.text(f"{name}:{kind}:{described}")
    return tokens


def _completions(c: _Counter, body: Body) -> int:
    prompt = body.get("prompt")
    tokens = 1 if prompt is None else _inputs(c, prompt)
    prompts = len([p for p in as_list(prompt) if isinstance(p, str | list)]) or 1
    return tokens + c.text(body.get("suffix")) * prompts


def _embeddings(c: _Counter, body: Body) -> int:
    return _inputs(c, body.get("input"))


def _inputs(c: _Counter, value: object) -> int:
    if isinstance(value, str):
        return c.text(value)
    return sum(_input(c, item) for item in as_list(value))


def _input(c: _Counter, item: object) -> int:
    if isinstance(item, list):
        return len(item)
    if isinstance(item, int) and not isinstance(item, bool):
        return 1
    return c.text(item)


def _responses(c: _Counter, body: Body) -> int:
    tokens = REPLY_PRIMING
    if isinstance(body.get("instructions"), str):
        tokens += PER_MESSAGE + c.text("developer") + c.text(body["instructions"])
    given = body.get("input")
    if isinstance(given, str):
        tokens += PER_MESSAGE + c.text("user") + c.text(given)
    tokens += sum(_item(c, as_dict(item)) for item in as_list(given))
    for value in as_dict(as_dict(body.get("prompt")).get("variables")).values():
        tokens += c.text(value) if isinstance(value, str) else _part(c, value)
    tokens += _tools(c, as_list(body.get("tools")), _flat_function)
    text_format = as_dict(as_dict(body.get("text")).get("format"))
    if "schema" in text_format:
        tokens += c.json(text_format["schema"])
    return tokens


def _flat_function(tool: Body) -> Body:
    """A Responses function tool is its own function definition."""
    return tool if tool.get("type") == "function" else {}


def _item(c: _Counter, item: Body) -> int:
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        parts = c.text(content) + sum(_part(c, part) for part in as_list(content))
        return PER_MESSAGE + c.text(item.get("role")) + parts
    if kind == "function_call":
        return PER_MESSAGE + _call(c, item)
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        return PER_MESSAGE + c.text(output) + sum(_part(c, part) for part in as_list(output))
    if kind == "computer_call_output":
        shot = as_dict(item.get("output"))
        rest = {key: value for key, value in item.items() if key != "output"}
        return PER_MESSAGE + c.json(rest) + _image(c, shot.get("image_url"), None)
    return PER_MESSAGE + c.json(item)


_OPENAI: dict[str, Callable[[_Counter, Body], int]] = {
    "chat": _chat,
    "completions": _completions,
    "embeddings": _embeddings,
    "responses": _responses,
}


def _image(c: _Counter, url: object, detail: object) -> int:
    base, tile = (2833, 5667) if c.model.startswith("gpt-4o-mini") else (85, 170)
    if detail == "low":
        return base
    width, height = png_size(url) or (768, 2048)
    scale = min(Fraction(1), Fraction(2048, max(width, height)))
    scale *= min(Fraction(1), 768 / (min(width, height) * scale))
    return base + tile * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def audio_tokens(data: object) -> int:
    """1 token per 100 ms of a base64 WAV file (RIFF, RF64 or BW64): the audio bytes its `data`
    chunks hold over the byte rate of its last `fmt ` chunk. A chunk holds what is there up to
    the size it declares; a size of 0 or 0xFFFFFFFF reads to the end of the file, as ffmpeg
    does."""
    if not isinstance(data, str):
        return 0
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return 0
    if raw[:4] not in (b"RIFF", b"RF64", b"BW64") or raw[8:12] != b"WAVE":
        return 0
    byte_rate, size, at = 0, 0, 12
    while at + 8 <= len(raw):
        kind, length = raw[at : at + 4], int.from_bytes(raw[at + 4 : at + 8], "little")
        if kind == b"fmt " and at + 20 <= len(raw):
            byte_rate = int.from_bytes(raw[at + 16 : at + 20], "little")
        elif kind == b"data" and length in (0, 0xFFFFFFFF):
            size += len(raw) - at - 8
            break
        elif kind == b"data":
            size += min(length, len(raw) - at - 8)
        at += 8 + length + (length & 1)
    return -(-size * 10 // byte_rate) if byte_rate else 0


def documents(endpoint: str, body: Body) -> int:
    """How many document inputs `body` sends, wherever a provider reads one: message content,
    tool results and function call outputs, a stored prompt."""
    if endpoint == "chat":
        return _count_blocks(body.get("messages"), lambda b: b.get("type") == "file")
    if endpoint == "responses":
        prompt = as_dict(body.get("prompt"))
        stored = 1 if prompt.get("id") is not None else 0
        variables = as_dict(prompt.get("variables")).values()
        stored += sum(1 for value in variables if as_dict(value).get("type") == "input_file")
        return stored + _count_blocks(body.get("input"), lambda b: b.get("type") == "input_file")
    if endpoint == "messages":
        return sum(1 for block in inside(body.get("messages")) if _claude_document(block))
    return 0


def _claude_document(block: Body) -> bool:
    source = as_dict(block.get("source")).get("type")
    return block.get("type") == "document" and source not in ("text", "content")


def _count_blocks(value: object, wanted: Callable[[Body], bool]) -> int:
    """Blocks `wanted` picks among `value`'s items' content (or output) and one level below."""
    found = 0
    for item in as_list(value):
        item = as_dict(item)
        blocks = (
            item.get("content") if isinstance(item.get("content"), list) else item.get("output")
        )
        for block in as_list(blocks):
            block = as_dict(block)
            found += (
                1
                if wanted(block)
                else sum(1 for b in as_list(block.get("content")) if wanted(as_dict(b)))
            )
    return found
