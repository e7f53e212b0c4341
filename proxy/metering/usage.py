"""Actual usage out of a provider's answer: a JSON body, or the events of an SSE stream.

A stream is watched by `StreamUsage`. It keeps the last usage report it saw (vLLM's continuous
usage stats repeat a running total on every chunk, so the last report wins; they are never
summed) and the text that was streamed, which settlement can count when no report arrives.
Reasoning tokens are billed but never streamed, so counted text is a floor, not the charge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.metering.estimate import EndpointName
from proxy.metering.pricing import Usage
from proxy.metering.text_counter import TextCounter, Tokenizer
from proxy.metering.token_kinds import openai_usage, token_count, with_service_tier

_DELTA_TEXT_FIELDS = frozenset(("content", "refusal", "reasoning_content", "reasoning"))


def usage_from_body(obj: Mapping[str, Any], endpoint: EndpointName) -> Usage | None:
    """The usage a non-streamed response reports, or None if it is missing or malformed."""
    return with_service_tier(parse_usage(obj.get("usage"), endpoint), obj.get("service_tier"))


def parse_usage(usage: Any, endpoint: EndpointName) -> Usage | None:
    """An OpenAI `usage` object as a Usage; None unless every count it needs is a valid integer.
    Its details (cached, audio, image tokens) are parts of the totals (token_kinds.py)."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("prompt_tokens"))
    completion = 0 if endpoint == "embeddings" else token_count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    return openai_usage(usage, prompt, completion)


class StreamUsage:
    """Follows the parsed JSON events of a chat or completions stream."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        """The last usage report seen, if any."""
        self.done = False
        """Whether the `[DONE]` marker arrived."""
        self.final = False
        """Whether the last JSON event was the `include_usage` chunk with a good report: OpenAI
        sends it last, after every choice has finished, so its report is the whole call's
        even when no `[DONE]` follows."""
        self.events = 0
        """How many JSON events were fed."""
        self._texts: dict[tuple[int | str, ...], list[str]] = {}
        self._tier: Any = None

    @staticmethod
    def is_usage_only(event: Mapping[str, Any]) -> bool:
        """The `include_usage` chunk: no choices, only usage. Hidden from clients that did not
        ask for it."""
        return event.get("choices") == [] and isinstance(event.get("usage"), dict)

    def mark_done(self) -> None:
        """The `data: [DONE]` marker arrived."""
        self.done = True

    def feed(self, event: Mapping[str, Any]) -> None:
        """Follow one parsed event: `choices[].delta` (chat) or `choices[].text` (completions)."""
        self.events += 1
        # Every chunk names the service tier; the usage chunk may come without it.
        self._tier = event.get("service_tier", self._tier)
        reported = event.get("usage")
        # Most chunks carry "usage": null (or none): nothing to parse.
        usage = None if reported is None else parse_usage(reported, "chat")
        if usage is not None:
            self.usage = with_service_tier(usage, self._tier)
        self.final = usage is not None and self.is_usage_only(event)
        choices = event.get("choices")
        if isinstance(choices, list):
            for position, choice in enumerate(choices):
                if isinstance(choice, dict):
                    self._feed_choice(_index(choice, position), choice)

    def counted_completion_tokens(self, enc: Tokenizer, tokenize_max_bytes: int) -> int:
        """Tokens of everything streamed so far. Each piece of text (a choice's content, a tool
        call's arguments, ...) is counted on its own, as the model produced it."""
        counter = TextCounter(enc, tokenize_max_bytes)
        return sum(counter.count("".join(pieces)) for pieces in self._texts.values())

    def _feed_choice(self, index: int, choice: Mapping[str, Any]) -> None:
        text = choice.get("text")
        if text:
            self._add((index, "text"), text)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        # A delta holds one or two fields: walking them beats asking for each known one.
        for field, value in delta.items():
            if field in _DELTA_TEXT_FIELDS:
                self._add((index, field), value)
            elif field == "function_call" and isinstance(value, dict):
                self._add_function((index, "function_call"), value)
            elif field == "tool_calls" and isinstance(value, list):
                for position, call in enumerate(value):
                    if isinstance(call, dict) and isinstance(call.get("function"), dict):
                        key = (index, "tool_call", _index(call, position))
                        self._add_function(key, call["function"])

    def _add_function(self, key: tuple[int | str, ...], function: Mapping[str, Any]) -> None:
        self._add((*key, "name"), function.get("name"))
        self._add((*key, "arguments"), function.get("arguments"))

    def _add(self, key: tuple[int | str, ...], text: Any) -> None:
        if isinstance(text, str) and text:
            self._texts.setdefault(key, []).append(text)


def _index(item: Mapping[str, Any], position: int) -> int:
    """A streamed item's `index`, or its position when it has no usable one."""
    index = token_count(item.get("index"))
    return position if index is None else index
