"""What the operator writes about a model: USD per 1M tokens of each kind, and what its calls
may be billed for besides (service tiers, hosted tool fees, long-context prices, documents, the
prompt tokens tools add). Amounts stay `Decimal`, exactly as written.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from proxy.policy.spec_types import SPEC_CONFIG, Money, not_float


class _Spec(BaseModel):
    model_config = SPEC_CONFIG


Multiplier = Annotated[Decimal, BeforeValidator(not_float), Field(gt=0, le=100)]
FeatureName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""A service tier or hosted tool as the provider names it: `priority`, `web_search`."""
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]


class ToolFeeSpec(_Spec):
    """A hosted tool's price: USD per call, and the input tokens one call may add."""

    per_call: Money
    input_tokens: Tokens = 0
    """Input tokens one call may add to the prompt (search results, a fetched page): reserved
    per call; the provider's usage report counts them."""


def _fee_shorthand(value: object) -> object:
    """`web_search: 0.01` is `web_search: {per_call: 0.01}`."""
    return value if isinstance(value, dict | ToolFeeSpec) else {"per_call": value}


ToolFee = Annotated[ToolFeeSpec, BeforeValidator(_fee_shorthand)]


class LongContextSpec(_Spec):
    """USD per 1M tokens of every token of a call whose prompt is above `above` tokens."""

    above: Annotated[int, Field(gt=0)]
    input: Money
    cached_input: Money | None = None
    """Default: the long-context input price."""
    cache_write: Money | None = None
    """Default: 1.25 times the long-context input price."""
    cache_write_1h: Money | None = None
    """Default: twice the long-context input price."""
    output: Money


class DocumentsSpec(_Spec):
    """Prompt tokens reserved per document input: `tokens_per_file`, or `tokens_per_page` times
    `pages` (the most pages a document may have)."""

    tokens_per_file: Annotated[int, Field(gt=0, le=10_000_000)] | None = None
    tokens_per_page: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    pages: Annotated[int, Field(gt=0, le=100_000)] | None = None


class ModelSpec(_Spec):
    """USD per 1M tokens."""

    input: Money
    cached_input: Money | None = None
    cache_write: Money | None = None
    """Cache writes: Anthropic's 5-minute ones, OpenAI's `cache_write_tokens`; without it,
    requests with `cache_control` are refused, and writes reported anyway are charged (and an
    OpenAI chat or Responses prompt reserved) at 1.25 times the input price."""
    cache_write_1h: Money | None = None
    """One-hour cache writes (`ttl: "1h"`); default: twice the input price."""
    output: Money
    encoding: str | None = None
    tokenizer_factor: Annotated[Decimal, BeforeValidator(not_float), Field(gt=0, le=10)] | None = (
        None
    )
    """Prompt tokens are the encoding's count times this (rounded up): for models whose own
    tokenizer is not available offline (Claude), so estimates stay above what is billed."""
    audio_input: Money | None = None
    """Prompt audio tokens (`prompt_tokens_details.audio_tokens`); default: input."""
    audio_output: Money | None = None
    """Completion audio tokens (`completion_tokens_details.audio_tokens`); default: output."""
    image_input: Money | None = None
    """Prompt image tokens, where the provider reports them apart; default: input."""
    image_output: Money | None = None
    """Generated image tokens, where the provider reports them apart; default: output."""
    image_token_factor: (
        Annotated[Decimal, BeforeValidator(not_float), Field(gt=0, le=100)] | None
    ) = None
    """Image inputs count the 512-px tile rule's tokens (gpt-4o's: 85 + 170 a tile) times this,
    rounded up: e.g. 33.34 for gpt-4o-mini, which bills 2833 + 5667 a tile."""
    limit_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    """The completion limit its chat API takes; default: max_completion_tokens for the o-series
    and gpt-5, either for the rest (model_rules.py)."""
    reasoning: bool | None = None
    """It may bill reasoning tokens it does not stream: a stream without a usage report is
    charged its reservation. Default: true for the o-series and gpt-5; otherwise only calls
    that enable thinking in the request (Claude's `thinking`)."""
    service_tiers: dict[FeatureName, Multiplier] = {}
    """Service tiers besides the standard one, each a factor on every token price
    (`priority: 2`, `flex: 0.5`); a call asking for another tier is refused."""
    tool_calls: dict[FeatureName, ToolFee] = {}
    """Hosted tools, USD per call (or {per_call, input_tokens}); a call enabling another hosted
    tool is refused."""
    long_context: LongContextSpec | None = None
    documents: DocumentsSpec | None = None
    """What a document input reserves; without it, documents are refused."""
    tool_prompt_tokens: Tokens | None = None
    """Prompt tokens the provider adds to a call that sends tools; default 346 for `claude*`
    models (Anthropic's tool-use system prompt), 0 otherwise."""
    client_tool_tokens: dict[FeatureName, Tokens] = {}
    """Anthropic's client tools by type (`bash_20250124: 245`): the prompt tokens each adds;
    added to (or overriding) the published ones for `claude*` models. A call sending another
    client tool type (bash, text_editor, computer, memory) is refused."""
