"""A model's prices in their runtime form: per-token prices in integer units, and what a call
may be billed for besides its tokens (service tiers, hosted tool fees, long-context prices, cache
writes, the prompt tokens Anthropic's tools add). Also the defaults the policy falls back on, and
how a dated snapshot's name finds its model's entry. Checked and converted once, at load
(schema.py, features.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

STANDARD_TIERS = frozenset({"default", "standard", "standard_only"})
"""Service tier names that mean the model's own prices (OpenAI's `default`, Anthropic's
`standard` and `standard_only`). `auto` is not a tier: the provider picks one."""

FIVE_MINUTE_WRITE = Fraction(5, 4)
"""A cache write's price over the input price where the policy names none (Anthropic's 5-minute
writes; a one-hour write is twice the input)."""


def default_write(input_price: int) -> int:
    """The price of a cache write the policy does not price: FIVE_MINUTE_WRITE times the input
    price, rounded up."""
    return -(-input_price * FIVE_MINUTE_WRITE.numerator // FIVE_MINUTE_WRITE.denominator)


CLAUDE_TOOL_PROMPT_TOKENS = 346
"""Anthropic's tool-use system prompt for the Claude 4 models (and 3.7 Sonnet) with tool_choice
auto or none (313 with any or tool), billed on every call that sends `tools`: the default
`tool_prompt_tokens` of a model whose name starts with `claude`."""

_BASH, _EDITOR = 245, 700
_COMPUTER = 735 + 499
CLAUDE_CLIENT_TOOL_TOKENS: Mapping[str, int] = {
    **dict.fromkeys(("bash_20241022", "bash_20250124"), _BASH),
    **dict.fromkeys(
        (
            "text_editor_20241022",
            "text_editor_20250124",
            "text_editor_20250429",
            "text_editor_20250728",
        ),
        _EDITOR,
    ),
    **dict.fromkeys(("computer_20241022", "computer_20250124", "computer_20251124"), _COMPUTER),
}
"""The input tokens Anthropic documents for its client tools, by type, besides the tool-use system
prompt: the bash tool 245, the text editor 700, computer use 735 plus its own system prompt
(466 to 499; the most is reserved). The default `client_tool_tokens` of a `claude*` model; the
memory tool's are not published, so it is refused unless the policy gives them."""


@dataclass(frozen=True, slots=True)
class ToolFee:
    """A hosted tool's price per call: `per_call` units (a container, for code_interpreter),
    and the input tokens each call may add to the prompt (search results, fetched pages)."""

    per_call: int
    input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LongContext:
    """Prices (units per 1M tokens) of every token of a call whose prompt, cache reads and
    writes included, is above `above` tokens."""

    above: int
    input: int
    cached_input: int
    output: int
    cache_write: int | None = None
    """None: 1.25 times the long-context input price (ModelPrice.five_write)."""
    cache_write_1h: int | None = None
    """None: twice the long-context input price (ModelPrice.hour_write)."""

    @property
    def five_write(self) -> int:
        """The long-context price of a 5-minute (or untimed) cache write."""
        return default_write(self.input) if self.cache_write is None else self.cache_write


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices in integer units per 1M tokens (USD per 1M × 10**8)."""

    name: str
    input: int
    cached_input: int
    output: int
    encoding: str = "o200k_base"
    cache_write: int | None = None
    """Prompt tokens written to a provider's cache (Anthropic's default 5-minute cache, OpenAI's
    `cache_write_tokens`); None: a request asking for cache writes (`cache_control`) is refused,
    and writes a usage reports anyway are charged at `five_write`."""
    tokenizer_factor: Fraction = Fraction(1)
    """The encoding's count is scaled by this to estimate the model's own tokens."""
    image_token_factor: Fraction | None = None
    """Image inputs count the tile rule's tokens times this (metering/images.py); None: the
    proxy knows no image rule for the model, and a call with image inputs is refused."""
    audio_input: int | None = None
    """Prompt audio tokens; None: the input price."""
    audio_output: int | None = None
    """Completion audio tokens; None: the output price."""
    image_input: int | None = None
    """Prompt image tokens reported apart; None: the input price."""
    image_output: int | None = None
    """Generated image tokens reported apart; None: the output price."""
    limit_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    """The only completion limit its chat API takes; None: either (model_rules.py)."""
    reasoning: bool | None = None
    """The model may bill reasoning tokens it never streams, so a stream that ends without a
    usage report is charged its reservation (model_rules.hides_reasoning). None: only when the
    request enables thinking."""
    service_tiers: Mapping[str, Fraction] = field(default_factory=dict)
    """Service tiers the model may be served at, other than the standard one, and the factor
    each multiplies every token price by (priority: 2, flex: 1/2)."""
    tool_calls: Mapping[str, ToolFee] = field(default_factory=dict)
    """Hosted tools billed per call (web_search, file_search, code_interpreter, ...)."""
    long_context: LongContext | None = None
    """Dearer prices above a prompt size; None: the same prices at every size."""
    document_tokens: int | None = None
    """Prompt tokens reserved per document input (a PDF or file by id, URL or data, a stored
    prompt), whose content the proxy cannot count; None: documents are refused."""
    tool_prompt_tokens: int = 0
    """Prompt tokens the provider adds to every call that sends tools (Claude's tool-use system
    prompt)."""
    client_tool_tokens: Mapping[str, int] = field(default_factory=dict)
    """Anthropic's client tools by type (`bash_20250124`, ...): the prompt tokens each adds
    besides its JSON. A call sending a client tool type not listed is refused."""
    cache_write_1h: int | None = None
    """Prompt tokens written to a one-hour cache (Anthropic's `ttl: "1h"`); None: `hour_write`."""
    tier: str | None = None
    """Set per call, never in the policy: the service tier the call was reserved at, which it is
    charged at when the answer names none (None: standard)."""
    cache_ttl: str | None = None
    """Set per call, never in the policy: the longest cache TTL the request asks for (`5m`,
    `1h`), at whose price cache writes are charged when the usage does not say their TTL
    (None: no cache_control)."""

    @property
    def five_write(self) -> int:
        """The price of a 5-minute (or untimed) cache write: `cache_write`, else 1.25 times the
        input price, rounded up (Anthropic's published rule, and OpenAI's for the models that
        bill writes): a write the policy did not price is never charged as plain input."""
        return default_write(self.input) if self.cache_write is None else self.cache_write

    @property
    def hour_write(self) -> int:
        """The price of a one-hour cache write: `cache_write_1h`, else twice the input price
        (Anthropic's published rule), never below the 5-minute price."""
        if self.cache_write_1h is not None:
            return self.cache_write_1h
        return max(2 * self.input, self.five_write)


_DATED = re.compile(r"(.+)-(?:(\d{4})-(\d{2})-(\d{2})|(\d{4})(\d{2})(\d{2})|(\d{2})(\d{2}))")


def snapshot_of(model: str) -> str | None:
    """The model `model` is a dated snapshot of, or None: a name ending in a date, written
    `-YYYY-MM-DD` (OpenAI), `-YYYYMMDD` (Anthropic) or `-MMDD` (older OpenAI snapshots), with
    a month 01-12 and a day 01-31."""
    found = _DATED.fullmatch(model)
    if found is None:
        return None
    month, day = [int(d) for d in found.groups()[1:] if d is not None][-2:]
    return found.group(1) if 1 <= month <= 12 and 1 <= day <= 31 else None
