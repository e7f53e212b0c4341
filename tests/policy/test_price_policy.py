"""How a policy prices a model: which names an entry prices, what each price field accepts and
means, what `cycles-proxy check` says of it, and the cost formula with tiers, tool fees and
long-context prices, against an oracle written here."""

from __future__ import annotations

import textwrap
from fractions import Fraction
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prices_support import prices_policy

from proxy.budget.call import prepare
from proxy.budget.endpoints import ENDPOINTS
from proxy.core.errors import BadRequest, PolicyError
from proxy.metering.pricing import Usage, cost_units, fit_rates
from proxy.policy import describe, load_policy
from proxy.policy.prices import LongContext, ModelPrice, ToolFee

LOOKUPS = {
    "gpt-4o": "gpt-4o",
    "gpt-4o-2024-08-06": "gpt-4o",
    "gpt-4-0613": "gpt-4",
    "claude-sonnet-4-20250514": "claude-sonnet-4",
    "chatgpt-4o-latest": "gpt-4o",
    "o1-pro": None,
    "o1-2024-12-17-pro": None,
    "gpt-5-pro": None,
    "gpt-5-priority": None,
    "gpt-4o-audio-preview": None,
    "gpt-4o-audio-preview-2024-12-17": None,
    "gpt-4o-unlisted-anything": None,
    "gpt-4o-2024-13-06": None,
    "gpt-4o-1232": None,
    "gpt-4o-20241": None,
    "chatgpt-4o-latest-2024-08-06": None,
}


@pytest.mark.parametrize(("model", "entry"), LOOKUPS.items())
def test_a_model_is_priced_by_its_exact_name_a_dated_snapshot_or_a_declared_alias(
    tmp_path: Path, model: str, entry: str | None
) -> None:
    found = prices_policy(tmp_path).price_for(model)
    assert (found.name if found is not None else None) == entry


BASE = """
models:
  m: {input: 2, cached_input: 1, output: 8}
plans:
  p: {budgets: {tenant: {limit: 5}}}
"""

BROKEN = {
    "standard tier priced": (
        "service_tiers: {default: 1}",
        "models.m.service_tiers.default: 'default' is not a tier to price",
    ),
    "auto priced": ("service_tiers: {auto: 2}", "models.m.service_tiers.auto: 'auto' is not"),
    "tier factor zero": ("service_tiers: {flex: 0}", "Input should be greater than 0"),
    "tier name with capitals": ("service_tiers: {Priority: 2}", "should match pattern"),
    "tool fee past 8 decimals": (
        "tool_calls: {web_search: 0.000000001}",
        "models.m.tool_calls.web_search.per_call: per_call 1E-9 USD has more than 8 decimal",
    ),
    "tool fee negative": (
        "tool_calls: {web_search: {per_call: -1}}",
        "greater than or equal to 0",
    ),
    "tool fee unknown field": (
        "tool_calls: {web_search: {per_search: 1}}",
        "models.m.tool_calls.web_search.per_search: unknown field",
    ),
    "long context cheaper than normal": (
        "long_context: {above: 1000, input: 1, output: 16}",
        "models.m.long_context.input: 1 is below the model's input (2)",
    ),
    "long context write defaulted below the model's": (
        "cache_write: 10, long_context: {above: 1000, input: 4, output: 16}",
        "models.m.long_context.cache_write: not given, and its default (5) is below the model's "
        "cache_write (10)",
    ),
    "long context one-hour write defaulted below the model's": (
        "cache_write_1h: 20, long_context: {above: 1000, input: 4, output: 16}",
        "models.m.long_context.cache_write_1h: not given, and its default (8) is below the "
        "model's cache_write_1h (20)",
    ),
    "long context without output": (
        "long_context: {above: 1000, input: 4}",
        "models.m.long_context.output: required field is missing",
    ),
    "documents both ways": (
        "documents: {tokens_per_file: 1000, tokens_per_page: 10, pages: 5}",
        "models.m.documents: give either tokens_per_file, or tokens_per_page with pages",
    ),
    "documents pages alone": (
        "documents: {pages: 5}",
        "models.m.documents: give either tokens_per_file",
    ),
    "tool prompt negative": ("tool_prompt_tokens: -1", "greater than or equal to 0"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_price_field_names_its_line_and_what_to_write(tmp_path: Path, case: str) -> None:
    field, expected = BROKEN[case]
    path = tmp_path / "policy.yaml"
    path.write_text(BASE.replace("output: 8}", f"output: 8, {field}}}"))
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert "policy.yaml:3:" in str(raised.value)
    assert expected in str(raised.value)


def test_a_plan_default_of_no_tool_calls_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE.replace("{budgets:", "{default_max_tool_calls: 0, budgets:"))
    with pytest.raises(PolicyError, match=r"plans\.p\.default_max_tool_calls: Input should be"):
        load_policy(path)


def test_check_shows_every_price_beyond_tokens(tmp_path: Path) -> None:
    text = describe(prices_policy(tmp_path))
    for expected in (
        "refused (400 unpriced_feature) unless priced below",
        "service tiers: priority ×2, flex ×0.5 (auto and no tier reserve priority)",
        "service tiers: flex ×0.5 (auto and no tier reserve the standard tier)",
        "hosted tools, USD per call: web_search 0.01 + 600 input tokens, file_search 0.0025, "
        "code_interpreter 0.03 + 600 input tokens",
        "documents: 3,000 prompt tokens reserved each",
        "documents: 6,000 prompt tokens reserved each",
        "prompt above 2,000 tokens: 6.00 / 0.60 / 22.50; cache_write 7.50",
        "tool prompt: 346 tokens on a call with tools",
        "test (default max_tokens 100, hosted tool calls 4)",
        "chatgpt-4o-latest → sent as chatgpt-4o-latest, priced as gpt-4o",
    ):
        assert expected in text, expected
    assert "tool prompt" not in text.split("gpt-4o ")[1].split("\n")[0]


def test_a_degrade_to_a_model_that_does_not_price_the_call_is_not_offered(
    tmp_path: Path,
) -> None:
    text = (tmp_path / "p.yaml").write_text(
        textwrap.dedent(
            """
            upstreams: {openai: {base_url: "https://api.openai.com/v1"}}
            routes: [{model: "*", upstream: openai}]
            models:
              gpt-5: {input: 1.25, output: 10, service_tiers: {priority: 2}}
              gpt-5-mini: {input: 0.25, output: 2}
              gpt-5-nano: {input: 0.05, output: 0.40, service_tiers: {priority: 2}}
            plans:
              p:
                budgets: {tenant: {limit: 5}}
                degrade:
                  - {when: {does_not_fit: true}, set: {model: gpt-5-mini}}
                  - {when: {does_not_fit: true}, set: {model: gpt-5-nano}}
            """
        )
    )
    assert text
    policy = load_policy(tmp_path / "p.yaml")
    body = {"model": "gpt-5", "input": "hi", "service_tier": "priority"}
    call = prepare(
        policy, policy.plans["p"], ENDPOINTS["/v1/responses"], orjson.dumps(body), shadow=False
    )
    assert [v.model for v in call.variants] == ["gpt-5", "gpt-5-nano"]
    assert [v.price.tier for v in call.variants] == ["priority", "priority"]
    with pytest.raises(BadRequest, match="service_tier 'priority'"):
        prepare(
            policy,
            policy.plans["p"],
            ENDPOINTS["/v1/responses"],
            orjson.dumps({**body, "model": "gpt-5-mini"}),
            shadow=False,
        )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("service_tier", 2, "'service_tier' must be a string"),
        ("max_tool_calls", -1, "'max_tool_calls' must be a non-negative integer"),
        ("max_tool_calls", True, "'max_tool_calls' must be a non-negative integer"),
    ],
)
def test_a_malformed_billed_field_is_refused(
    tmp_path: Path, field: str, value: object, words: str
) -> None:
    policy = prices_policy(tmp_path)
    body = {"model": "gpt-5", "input": "hi", "tools": [{"type": "web_search"}], field: value}
    with pytest.raises(BadRequest, match=words):
        prepare(
            policy,
            policy.plans["test"],
            ENDPOINTS["/v1/responses"],
            orjson.dumps(body),
            shadow=False,
        )


def test_an_anthropic_max_uses_below_one_is_refused(tmp_path: Path) -> None:
    policy = prices_policy(tmp_path)
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 0}
    body = {"model": "claude-sonnet-4", "max_tokens": 5, "messages": [], "tools": [tool]}
    with pytest.raises(BadRequest, match=r"tools\[0\].max_uses must be a positive integer"):
        prepare(
            policy,
            policy.plans["test"],
            ENDPOINTS["/v1/messages"],
            orjson.dumps(body),
            shadow=False,
        )


# -- the cost formula -------------------------------------------------------------------------

FEES = {"web_search": 1_000_000, "file_search": 250_000}
prices = st.builds(
    lambda i, c, o, tiers, long: ModelPrice(
        "m",
        i,
        min(c, i),
        o,
        service_tiers=tiers,
        tool_calls={t: ToolFee(fee, 0) for t, fee in FEES.items()},
        long_context=long,
    ),
    st.integers(0, 10**10),
    st.integers(0, 10**10),
    st.integers(0, 10**10),
    st.dictionaries(
        st.sampled_from(["priority", "flex"]),
        st.fractions(Fraction(1, 100), Fraction(100)).map(lambda f: f.limit_denominator(1000)),
    ),
    st.none()
    | st.builds(
        lambda above, i, c, o: LongContext(above, i, c, o),
        st.integers(0, 10**6),
        st.integers(0, 10**10),
        st.integers(0, 10**10),
        st.integers(0, 10**10),
    ),
)
usages = st.builds(
    lambda prompt, cached, completion, tier, calls: Usage(
        prompt, completion, min(cached, prompt), service_tier=tier, tool_calls=calls
    ),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.sampled_from([None, "default", "priority", "flex"]),
    st.lists(st.tuples(st.sampled_from(sorted(FEES)), st.integers(0, 100)), max_size=2).map(tuple),
)


def oracle(price: ModelPrice, usage: Usage) -> Fraction:
    """DESIGN's formula: every token at its price (the long-context ones above the threshold),
    times the served tier's factor, plus each tool call's fee."""
    long = price.long_context
    rates = (price.input, price.cached_input, price.output)
    if long is not None and usage.prompt_tokens > long.above:
        rates = (long.input, long.cached_input, long.output)
    tokens = (
        (usage.prompt_tokens - usage.cached_tokens) * rates[0]
        + usage.cached_tokens * rates[1]
        + usage.completion_tokens * rates[2]
    )
    factor = price.service_tiers.get(usage.service_tier or "", Fraction(1))
    fees = sum(n * FEES[tool] for tool, n in usage.tool_calls)
    return Fraction(tokens) * factor / 10**6 + fees


@given(prices, usages)
def test_a_call_costs_its_exact_price_rounded_up_once(price: ModelPrice, usage: Usage) -> None:
    cost = cost_units(price, usage)
    assert type(cost) is int
    assert oracle(price, usage) <= cost < oracle(price, usage) + 1


@given(prices, usages, st.integers(0, 10**6))
def test_a_fitted_completion_is_still_covered(price: ModelPrice, usage: Usage, fitted: int) -> None:
    """The reserve script's fit charges rest + ceil(tokens x output / 10**6): never below what
    the call at that completion costs."""
    asked = Usage(usage.prompt_tokens, 0, usage.cached_tokens, tool_calls=usage.tool_calls)
    rest, output = fit_rates(price, asked)
    full = Usage(usage.prompt_tokens, fitted, usage.cached_tokens, tool_calls=usage.tool_calls)
    assert rest + -(-fitted * output // 10**6) >= cost_units(price, full)
