"""What the fake provider bills for a Claude prompt (Anthropic's Messages API), in code of the
fake's own; fake_tokens.py says why the fake must not share the proxy's code, and counts OpenAI's.

Published rules:

- Claude images: (width × height) / 750 tokens, at most 1600 (Anthropic's vision guide); an image
  the fake cannot measure is 1600. Claude Opus 4.7 reads larger images: fitted into 2576 px on
  the long edge, ⌈w/28⌉ × ⌈h/28⌉ tokens, at most 92 × 52 = 4784 (what it cannot measure).
  Claude tools: Anthropic's tool-use system prompt, 346 tokens with `tool_choice` auto or none,
  313 with any or tool (the Claude 4 models), plus the tools; Anthropic's client tools add what
  its tool docs list besides their JSON: bash 245 tokens, the text editor 700, computer use 735
  and its own system prompt (466 to 499; the fake bills 499).

Rules of the fake's own, where nothing is published:

- Anthropic Messages (Claude's tokenizer is not published): the prompt is rendered in the turn
  format Anthropic documented for its Text Completions API — the system text, then
  "\\n\\nHuman: …" or "\\n\\nAssistant: …" per message, ending "\\n\\nAssistant:" — and its
  cl100k_base count is scaled by CLAUDE_RATIO (11/10) and rounded up, once. Images and the
  tool-use system prompt are added unscaled. Blocks other than text, images and tool results
  render as their JSON, and each image inside one (a document whose source is content blocks)
  is billed as an image, at whatever depth. The ratio is below the test policies'
  `tokenizer_factor` (1.2): a proxy
  that applies its factor covers this count, one that forgets it does not. A structured output
  format (`output_config.format`) renders as its JSON after the turns.
- Claude cache writes: a `cache_control` breakpoint writes the prompt up to it, in Anthropic's
  cache order (tools, system, messages; a top-level `cache_control` marks the last message).
  A breakpoint anywhere inside a system or message block (in a tool result, a search result,
  a document's content, a web fetch result; never in a tool call's `input`) writes the prompt
  up to the end of that top-level block. The prefix renders as the prompt does, tools as their
  JSON with the tool-use system prompt before them, and counts the same way (× CLAUDE_RATIO,
  media unscaled), at most the whole prompt. The prefix up to the last one-hour breakpoint is
  written for an hour, the rest up to the last breakpoint for five minutes.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import orjson

from proxy.core import encodings
from proxy.testing.fake_json import Body, as_dict, as_list, inside, plain, png_size

CLAUDE_RATIO = Fraction(11, 10)


CLAUDE_TOOL_PROMPT = {"auto": 346, "none": 346, "any": 313, "tool": 313}


CLAUDE_CLIENT_TOOLS = {"bash": 245, "text_editor": 700, "computer": 735 + 499}


CLAUDE_IMAGE_MAX = 1600
HIGH_RES_MODELS = ("claude-opus-4-7",)
HIGH_RES_EDGE, HIGH_RES_PATCH, HIGH_RES_MAX = 2576, 28, 92 * 52


CLAUDE_TURNS = {"user": "Human", "assistant": "Assistant"}


def claude_prompt_tokens(body: Body) -> int:
    """The fake's Claude count: the rendered prompt's cl100k_base tokens × CLAUDE_RATIO, rounded
    up, plus images and the tool-use system prompt."""
    media: list[int] = []
    model = plain(body.get("model"))
    text = "".join(_claude_blocks(body.get("system"), media, model))
    for message in as_list(body.get("messages")):
        role = plain(as_dict(message).get("role"))
        turn = CLAUDE_TURNS.get(role, role.capitalize())
        text += f"\n\n{turn}: " + "".join(
            _claude_blocks(as_dict(message).get("content"), media, model)
        )
    text += "\n\nAssistant:"
    output_format = as_dict(body.get("output_config")).get("format")
    if output_format is not None:
        text += orjson.dumps(output_format).decode()
    tools = as_list(body.get("tools"))
    if tools:
        choice = plain(as_dict(body.get("tool_choice")).get("type")) or "auto"
        media.append(CLAUDE_TOOL_PROMPT.get(choice, CLAUDE_TOOL_PROMPT["auto"]))
        text += "".join(orjson.dumps(tool).decode() for tool in tools)
        media += [_client_tool(tool) for tool in tools]
    counted = len(encodings.get_encoding("cl100k_base").encode_ordinary(text))
    return math.ceil(counted * CLAUDE_RATIO) + sum(media)


def claude_cache_writes(body: Body) -> tuple[int, int]:
    """The prompt tokens Claude's cache breakpoints write: (five-minute, one-hour)."""
    marks: list[tuple[str, str, list[int]]] = []
    text, media = "", []
    model = plain(body.get("model"))
    tools = as_list(body.get("tools"))
    if tools:
        choice = plain(as_dict(body.get("tool_choice")).get("type")) or "auto"
        media.append(CLAUDE_TOOL_PROMPT.get(choice, CLAUDE_TOOL_PROMPT["auto"]))
    for tool in tools:
        text += orjson.dumps(tool).decode()
        media.append(_client_tool(tool))
        marks += _mark(as_dict(tool), text, media)
    system = body.get("system")
    for block in [system] if isinstance(system, str) else as_list(system):
        text += "".join(_claude_blocks(block if isinstance(block, str) else [block], media, model))
        for holder in inside(block):
            marks += _mark(holder, text, media)
    for message in as_list(body.get("messages")):
        role = plain(as_dict(message).get("role"))
        text += f"\n\n{CLAUDE_TURNS.get(role, role.capitalize())}: "
        content = as_dict(message).get("content")
        for block in [content] if isinstance(content, str) else as_list(content):
            text += "".join(
                _claude_blocks(block if isinstance(block, str) else [block], media, model)
            )
            for holder in inside(block):
                marks += _mark(holder, text, media)
    marks += _mark(body, text, media)
    if not marks:
        return 0, 0
    whole = claude_prompt_tokens(body)
    written = [(ttl, min(whole, _claude_count(upto, seen))) for ttl, upto, seen in marks]
    total = max(tokens for _, tokens in written)
    hour = max((tokens for ttl, tokens in written if ttl == "1h"), default=0)
    return total - hour, hour


def _client_tool(tool: object) -> int:
    """What an Anthropic client tool adds to the prompt besides its JSON (0 for others)."""
    kind = plain(as_dict(tool).get("type"))
    return CLAUDE_CLIENT_TOOLS.get(re.sub(r"_\d{8}$", "", kind), 0)


def _mark(holder: Body, text: str, media: list[int]) -> list[tuple[str, str, list[int]]]:
    """A breakpoint where `holder` has a cache_control: its TTL and the prefix so far."""
    control = holder.get("cache_control")
    if not isinstance(control, dict):
        return []
    return [(str(control.get("ttl", "5m")), text, list(media))]


def _claude_count(text: str, media: list[int]) -> int:
    counted = len(encodings.get_encoding("cl100k_base").encode_ordinary(text))
    return math.ceil(counted * CLAUDE_RATIO) + sum(media)


def _claude_blocks(content: object, media: list[int], model: str) -> list[str]:
    """The text `content` (a string or blocks) renders as; images are added to `media`."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in as_list(content):
        block = as_dict(block)
        kind = block.get("type")
        if kind == "text":
            texts.append(plain(block.get("text")))
        elif kind == "image":
            media.append(_claude_image(as_dict(block.get("source")), model))
        elif kind == "tool_result":
            texts += _claude_blocks(block.get("content"), media, model)
        else:
            texts.append(orjson.dumps(block).decode())
            images = [as_dict(b.get("source")) for b in inside(block) if b.get("type") == "image"]
            media += [_claude_image(source, model) for source in images]
    return texts


def _claude_image(source: Body, model: str) -> int:
    size = None
    if source.get("type") == "base64" and source.get("media_type") == "image/png":
        size = png_size(f"data:image/png;base64,{plain(source.get('data'))}")
    if model.startswith(HIGH_RES_MODELS):
        if size is None:
            return HIGH_RES_MAX
        scale = min(Fraction(1), Fraction(HIGH_RES_EDGE, max(size)))
        patches = [math.ceil(side * scale / HIGH_RES_PATCH) for side in size]
        return min(HIGH_RES_MAX, patches[0] * patches[1])
    if size is None:
        return CLAUDE_IMAGE_MAX
    return min(CLAUDE_IMAGE_MAX, math.ceil(size[0] * size[1] / 750))
