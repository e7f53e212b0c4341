"""The OpenAI cookbook's examples ("How to count tokens with tiktoken"), with the prompt sizes the
API measured for them: literal numbers that pin both the proxy's estimate (test_estimate) and the
fake provider's own counter (test_fake_tokens), neither computed from the other."""

from __future__ import annotations

from typing import Any

COOKBOOK_PROMPT_TOKENS = {"cl100k_base": 129, "o200k_base": 124}
"""What the API billed for COOKBOOK_MESSAGES: on gpt-3.5-turbo and gpt-4 (cl100k_base), and on
gpt-4o and gpt-4o-mini (o200k_base)."""

# The cookbook's example conversation (section 6).
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]
