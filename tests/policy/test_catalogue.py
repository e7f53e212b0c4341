"""Price catalogues (LiteLLM's, Portkey's) → the policy's `models:` entries, and a policy's prices
against a catalogue's. The catalogues are small files written for these tests in each format
(tests/policy/catalogues/), with the catalogues' own per-token floats; the oracle for what an
imported price charges reads the same JSON as exact fractions, apart from the conversion."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import settled

from proxy.metering.pricing import Usage, cost_units
from proxy.policy import load_policy
from proxy.policy.catalogue import Imported, build, parse_json, patterns, render, selected
from proxy.policy.catalogue_litellm import listings as litellm
from proxy.policy.catalogue_portkey import listings as portkey
from proxy.policy.price_diff import ABSENT, DIFFERS, MISSING, price_diff
from proxy.testing.fake_openai import Billed
from proxy.testing.fake_upstream import FakeUpstream
from proxy.testing.local import local_stack

CATALOGUES = Path(__file__).resolve().parent / "catalogues"
READERS = {"litellm": litellm, "portkey": portkey}
UNITS = 10**8
BASE_POLICY = """
mode: enforce
identity: header
upstreams:
  openai: {base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
routes:
  - {model: "*", upstream: openai}
plans:
  test:
    default_max_tokens: 100
    budgets:
      tenant: {limit: 5, period: month}
tenants:
  alpha: {plan: test}
"""


def imported(form: str) -> dict[str, Imported]:
    path = CATALOGUES / f"{form}.json"
    data = parse_json(path.read_text(), str(path))
    return {listing.name: build(listing) for listing in READERS[form](data)}


def entry(form: str, model: str) -> dict[str, Any]:
    found = imported(form)[model].entry
    assert found is not None, imported(form)[model]
    return found


def per_token(form: str, model: str, field: str) -> Fraction:
    """USD per token as the catalogue wrote it, read as an exact fraction."""
    data = json.loads((CATALOGUES / f"{form}.json").read_text(), parse_float=Fraction)
    if form == "litellm":
        return Fraction(data[model][field])
    return Fraction(data[model]["pricing_config"]["pay_as_you_go"][field]["price"]) / 100


def test_litellm_per_token_floats_become_exact_per_million_decimals() -> None:
    # A float multiplication gives 0.39999999999999997 and 1.5999999999999999 for these.
    assert float("4e-07") * 1e6 != 0.4 and float("1.6e-06") * 1e6 != 1.6
    assert entry("litellm", "gpt-4.1-mini") == {
        "input": "0.40",
        "cached_input": "0.10",
        "output": "1.60",
    }
    assert entry("litellm", "gpt-5")["cached_input"] == "0.125"


def test_portkey_cents_per_token_become_usd_per_million() -> None:
    """Portkey prices in cents: 0.000125 cents a token is 1.25 USD per 1M, and a web search at
    1 cent is 0.01 USD a call."""
    gpt5 = entry("portkey", "gpt-5")
    assert (gpt5["input"], gpt5["cached_input"], gpt5["output"]) == ("1.25", "0.125", "10.00")
    assert gpt5["tool_calls"] == {"file_search": "0.0025", "web_search": "0.01"}
    assert entry("portkey", "gpt-4.1-mini") == entry("litellm", "gpt-4.1-mini")


@pytest.mark.parametrize("form", READERS)
def test_both_formats_give_the_same_entries_for_the_same_prices(form: str) -> None:
    claude = entry(form, "claude-sonnet-4-5")
    assert {k: claude[k] for k in ("input", "cached_input", "cache_write", "cache_write_1h")} == {
        "input": "3.00",
        "cached_input": "0.30",
        "cache_write": "3.75",
        "cache_write_1h": "6.00",
    }
    audio = entry(form, "gpt-4o-audio-preview")
    assert (audio["audio_input"], audio["audio_output"]) == ("40.00", "80.00")


@pytest.mark.parametrize("form", READERS)
def test_a_service_tier_is_a_factor_when_every_price_is_one_multiple(form: str) -> None:
    assert entry(form, "gpt-5")["service_tiers"] == {"flex": "0.5", "priority": "2"}


def test_a_service_tier_whose_prices_are_not_one_multiple_is_left_out() -> None:
    """gpt-4o's priority input and output are 1.7 times the standard ones, its cached input
    twice: no single factor says that, so calls asking for priority stay refused."""
    gpt4o = imported("litellm")["gpt-4o"]
    assert gpt4o.entry is not None and "service_tiers" not in gpt4o.entry
    assert any("'priority' left out" in note and "17/10, 2" in note for note in gpt4o.notes)
    flex = imported("portkey")["gpt-5.4"]
    assert flex.entry is not None and "service_tiers" not in flex.entry


def test_litellm_prices_above_a_prompt_size_become_the_long_context_tier() -> None:
    assert entry("litellm", "claude-sonnet-4-5")["long_context"] == {
        "above": 200000,
        "input": "6.00",
        "cached_input": "0.60",
        "cache_write": "7.50",
        "cache_write_1h": "12.00",
        "output": "22.50",
    }


def test_portkey_context_tiers_become_the_long_context_tier() -> None:
    gpt54 = imported("portkey")["gpt-5.4"]
    assert gpt54.entry is not None
    assert gpt54.entry["long_context"] == {
        "above": 272000,
        "input": "5.00",
        "cached_input": "0.50",
        "output": "22.50",
    }
    assert "regional prices (us,eu)" in gpt54.notes


def test_prices_the_policy_cannot_hold_leave_the_model_out() -> None:
    """Reasoning dearer than output would be charged as output (under-recorded); several
    long-context thresholds do not fit the policy's one; a formula of its own means the prices
    do not mean what they say."""
    found = imported("litellm")
    assert found["deep-thinker"].entry is None
    assert "the policy prices reasoning as output" in str(found["deep-thinker"].refused)
    assert found["gemini-tiered"].entry is None
    assert "128000, 256000" in str(found["gemini-tiered"].refused)
    assert "reasoning" not in str(found["gpt-5"].notes)  # the same price as output: no note
    assert imported("portkey")["stable-image"].entry is None


@pytest.mark.parametrize("form", READERS)
def test_a_fee_every_call_pays_leaves_the_model_out(form: str) -> None:
    """Perplexity's online models charge per request besides tokens: the policy has no price
    for that, and their tokens alone would under-record every call."""
    sonar = imported(form)["sonar-online"]
    assert sonar.entry is None and "a fee per request" in str(sonar.refused)


def test_what_the_policy_cannot_say_is_reported_not_guessed() -> None:
    found = imported("litellm")
    gpt4o = found["gpt-4o"]
    assert gpt4o.entry is not None and "web_search" not in gpt4o.entry["tool_calls"]
    assert any("differ by context size" in note for note in gpt4o.notes)
    assert gpt4o.entry["tool_calls"] == {"code_interpreter": "0.03"}
    assert any("input_cost_per_token_batches" in note for note in found["gpt-4.1-mini"].notes)
    assert "sample_spec" not in found
    assert "default" not in imported("portkey")


@pytest.mark.parametrize(("form", "model"), [("litellm", "cacheless"), ("portkey", "gpt-5")])
def test_a_cache_write_below_the_input_price_is_left_out(form: str, model: str) -> None:
    """A write priced 0 (Portkey's placeholder for OpenAI) would charge written prompt tokens
    nothing; without cache_write the proxy charges them at 1.25 times input."""
    found = imported(form)[model]
    assert found.entry is not None and "cache_write" not in found.entry
    assert any("cache_write 0.00 is below the input price" in note for note in found.notes)


def test_model_globs_select_by_name() -> None:
    globs = patterns(" gpt-4o*, claude-* ,")
    assert globs == ("gpt-4o*", "claude-*")
    chosen = [name for name in imported("litellm") if selected(name, globs)]
    assert chosen == ["gpt-4o", "gpt-4o-audio-preview", "claude-sonnet-4-5"]
    assert selected("anything", ())


@pytest.mark.parametrize("form", READERS)
def test_the_imported_block_loads_and_prices_a_call_as_the_catalogue_does(
    tmp_path: Path, form: str
) -> None:
    (tmp_path / "models.yaml").write_text(render(imported(form).values(), f"{form}.json"))
    (tmp_path / "policy.yaml").write_text(BASE_POLICY)
    price = load_policy(tmp_path).models["gpt-4.1-mini"]
    usage = Usage(prompt_tokens=1_234_567, completion_tokens=76_543, cached_tokens=1_000)
    fields = {
        "litellm": ("input_cost_per_token", "cache_read_input_token_cost", "output_cost_per_token"),
        "portkey": ("request_token", "cache_read_input_token", "response_token"),
    }[form]
    rates = [per_token(form, "gpt-4.1-mini", f) for f in fields]
    exact = (1_233_567 * rates[0] + 1_000 * rates[1] + 76_543 * rates[2]) * UNITS
    assert cost_units(price, usage) == math.ceil(exact)


async def test_a_call_to_an_imported_model_is_charged_the_catalogues_price(
    tmp_path: Path, store_url: str
) -> None:
    (tmp_path / "models.yaml").write_text(render(imported("litellm").values(), "litellm.json"))
    (tmp_path / "policy.yaml").write_text(BASE_POLICY)
    fake = FakeUpstream()
    async with (
        local_stack(load_policy(tmp_path), store=store_url, fake=fake) as stack,
        aiohttp.ClientSession() as http,
    ):
        body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"X-Cycles-Tenant": "alpha"}
        async with http.post(f"{stack.url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        (billed,) = fake.billed
        assert isinstance(billed, Billed) and billed.cached_tokens == 0
        rates = [
            per_token("litellm", "gpt-4.1-mini", f)
            for f in ("input_cost_per_token", "output_cost_per_token")
        ]
        tokens = (billed.prompt_tokens, billed.completion_tokens)
        expected = math.ceil(sum(n * r for n, r in zip(tokens, rates, strict=True)) * UNITS)
        row = await settled(stack.ledger)
        assert (row.spent, row.reserved) == (expected, 0)


def prices(tmp_path: Path, models: str) -> dict[str, Any]:
    (tmp_path / "policy.yaml").write_text(BASE_POLICY + "models:\n" + models)
    return dict(load_policy(tmp_path / "policy.yaml").models)


def test_diff_is_empty_when_the_policy_has_the_catalogues_prices(tmp_path: Path) -> None:
    """2.5 and "2.50" are one price, and a price left to its default equals it written out."""
    models = prices(
        tmp_path,
        "  gpt-4.1-mini: {input: 0.4, cached_input: 0.1, output: 1.6}\n"
        "  gpt-5: {input: 1.25, cached_input: 0.125, output: 10,"
        " service_tiers: {priority: 2, flex: 0.5},"
        " tool_calls: {web_search: 0.01, file_search: {per_call: 0.0025, input_tokens: 8000}}}\n",
    )
    assert price_diff(imported("litellm").values(), models, ()) == []


def test_diff_lists_each_price_that_differs_and_each_model_on_one_side_only(
    tmp_path: Path,
) -> None:
    models = prices(
        tmp_path,
        "  gpt-4.1-mini: {input: 0.4, output: 1.7}\n"
        "  gpt-5: {input: 1.25, cached_input: 0.125, output: 10, service_tiers: {priority: 2}}\n"
        "  in-house: {input: 1, output: 1}\n",
    )
    found = price_diff(imported("litellm").values(), models, ())
    assert found == [
        (DIFFERS, "gpt-4.1-mini", "cached_input: policy 0.40, catalogue 0.10"),
        (DIFFERS, "gpt-4.1-mini", "output: policy 1.70, catalogue 1.60"),
        (DIFFERS, "gpt-5", "service_tiers.flex: policy none, catalogue 0.5"),
        (DIFFERS, "gpt-5", "tool_calls.file_search: policy none, catalogue 0.0025"),
        (DIFFERS, "gpt-5", "tool_calls.web_search: policy none, catalogue 0.01"),
        (ABSENT, "in-house", "priced in the policy, not in the catalogue"),
    ]
    named = price_diff(imported("litellm").values(), models, ("gpt-4o*", "in-*"))
    assert named == [
        (ABSENT, "in-house", "priced in the policy, not in the catalogue"),
        (MISSING, "gpt-4o", "in the catalogue, not priced in the policy"),
        (MISSING, "gpt-4o-audio-preview", "in the catalogue, not priced in the policy"),
    ]


def test_diff_says_when_the_catalogues_entry_cannot_be_imported(tmp_path: Path) -> None:
    models = prices(tmp_path, "  deep-thinker: {input: 1, output: 4}\n")
    ((category, name, what),) = price_diff(imported("litellm").values(), models, ("deep-*",))
    assert (category, name) == (DIFFERS, "deep-thinker")
    assert "cannot be imported" in what and "reasoning" in what


def test_decimal_places_beyond_the_ledgers_are_left_out_not_rounded() -> None:
    """A catalogue's own float error (Portkey has 0.7499999999999999) cannot be held in units of
    1e-8 USD: the compiler's message says so and the model is left out."""
    listing = next(
        litellm(
            {
                "odd": {
                    "input_cost_per_token": Decimal("7.499999999999999e-07"),
                    "output_cost_per_token": Decimal("1e-06"),
                }
            }
        )
    )
    odd = build(listing)
    assert odd.entry is None and "more than 8 decimal places" in str(odd.refused)
