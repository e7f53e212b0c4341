"""A model's `image_token_factor`: the policy's, else the one OpenAI publishes for its name (or
the name a dated snapshot extends), else none, and its images are refused; `cycles-proxy check`
shows it, and warns of a factor written below the published rule."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from proxy.policy import describe, load_policy
from proxy.policy.advice import warnings
from proxy.policy.runtime import Policy

BASE = """
identity: header
upstreams: {openai: {base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}}
routes: [{model: "*", upstream: openai}]
models:
{models}
plans: {test: {budgets: {tenant: {limit: 5, period: month}}}}
tenants: {alpha: {plan: test}}
"""


def policy(tmp_path: Path, models: str) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE.replace("{models}", models))
    return load_policy(path)


@pytest.mark.parametrize(
    ("entry", "factor"),
    [
        ("gpt-4o-mini: {input: 0.15, output: 0.60}", Fraction(5667, 170)),
        ("gpt-4o-mini-2024-07-18: {input: 0.15, output: 0.60}", Fraction(5667, 170)),
        ("gpt-4o: {input: 2.50, output: 10}", Fraction(1)),
        ("o3: {input: 2, output: 8}", Fraction(1)),
        ("gpt-4.1-mini: {input: 0.40, output: 1.60}", None),
        ("my-vision-model: {input: 1, output: 2}", None),
        ("gpt-4.1-mini: {input: 0.40, output: 1.60, image_token_factor: 3.5}", Fraction(7, 2)),
        ("gpt-4o-mini: {input: 0.15, output: 0.60, image_token_factor: 40}", Fraction(40)),
    ],
)
def test_the_factor_is_the_policy_s_else_the_published_one_else_none(
    tmp_path: Path, entry: str, factor: Fraction | None
) -> None:
    [price] = policy(tmp_path, "  " + entry).models.values()
    assert price.image_token_factor == factor


def test_check_shows_which_models_refuse_images_and_warns_of_a_factor_below_the_rule(
    tmp_path: Path,
) -> None:
    pol = policy(
        tmp_path,
        "  gpt-4o-mini: {input: 0.15, output: 0.60, image_token_factor: 1}\n"
        "  gpt-4.1-mini: {input: 0.40, output: 1.60}\n"
        "  gpt-4o: {input: 2.50, output: 10}",
    )
    [warned] = warnings(pol)
    assert warned.startswith("models.gpt-4o-mini.image_token_factor: 1 is below the 33.34")
    text = describe(pol)
    assert f"WARNING: {warned}" in text
    line = next(line for line in text.splitlines() if line.strip().startswith("gpt-4.1-mini"))
    assert "images refused (no image_token_factor)" in line
    unwarned = policy(tmp_path, "  gpt-4o-mini: {input: 0.15, output: 0.60}")
    assert warnings(unwarned) == [] and "image tokens ×33.3353" in describe(unwarned)


ALIASED = """
identity: header
upstreams:
  anthropic:
    base_url: "https://api.anthropic.com/v1"
    models: {{claude-opus-4-7: {{price: claude-opus-4-6}}, opus: {{send: {send}, price: {price}}}}}
  openai:
    base_url: "https://api.openai.com/v1"
    models: {{mini: {{send: gpt-4o-mini-2024-07-18, price: gpt-4o}}, big: {{send: gpt-4o,
             price: gpt-4o-mini}}, llava: {{send: llava-1.6, price: gpt-4o-mini}}}}
routes: [{{model: "*", upstream: openai}}]
models:
  claude-opus-4-6: {{input: 5, output: 25{written}}}
  gpt-4o: {{input: 2.50, output: 10}}
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
  in-house: {{input: 1, output: 2}}
plans: {{test: {{budgets: {{tenant: {{limit: 5, period: month}}}}}}}}
"""


def aliased(tmp_path: Path, *, written: str = "", send: str = "x", price: str = "gpt-4o") -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(ALIASED.format(written=written, send=send, price=price))
    return load_policy(path)


@pytest.mark.parametrize(
    ("written", "alias", "factor"),
    [
        ("", "claude-opus-4-7", Fraction(4784, 1600)),
        (", image_token_factor: 1.5", "claude-opus-4-7", Fraction(4784, 1600)),
        (", image_token_factor: 4", "claude-opus-4-7", Fraction(4)),
        ("", "mini", Fraction(5667, 170)),
        ("", "big", Fraction(1)),
        ("", "llava", None),
    ],
)
def test_an_alias_reserves_images_at_least_at_the_factor_published_for_the_model_sent(
    tmp_path: Path, written: str, alias: str, factor: Fraction | None
) -> None:
    """The served model's published factor, or a factor written on the entry if higher; the
    entry's published factor is its own model's rule, so gpt-4o priced as gpt-4o-mini (big) is
    reserved at gpt-4o's, and a served model with none (llava) has none: its images are
    refused. The entry itself is unchanged."""
    pol = aliased(tmp_path, written=written)
    price = pol.price_for(alias)
    assert price is not None and price.image_token_factor == factor
    assert price.name == pol.aliases[alias].price
    entry = pol.models[pol.aliases[alias].price]
    assert (price is entry) == (entry.image_token_factor == factor)
    assert pol.price_for(alias) is price  # derived at load, not per call


def test_an_alias_of_an_entry_without_an_image_rule_takes_the_served_model_s(
    tmp_path: Path,
) -> None:
    """Sent as a dated Opus 4.7 snapshot, priced as an entry with no image rule: Opus 4.7's."""
    pol = aliased(tmp_path, send="claude-opus-4-7-20260416", price="in-house")
    assert pol.models["in-house"].image_token_factor is None
    price = pol.price_for("opus")
    assert price is not None and price.image_token_factor == Fraction(4784, 1600)
    unknown = aliased(tmp_path, send="in-house-v2", price="in-house")
    assert unknown.price_for("opus") is unknown.models["in-house"]


NEW = """
identity: header
upstreams:
  anthropic:
    base_url: "https://api.anthropic.com/v1"
    models: {{{alias}}}
  azure:
    kind: azure
    base_url: "https://x.openai.azure.com/openai"
    deployments: {{prod: gpt-4o-mini}}
routes: [{{model: "*", upstream: anthropic}}]
models:
  claude-opus-4-6: {{input: 5, output: 25{written}}}
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
plans: {{test: {{budgets: {{tenant: {{limit: 5, period: month}}}}}}}}
"""


def new_model(tmp_path: Path, alias: str, written: str = "") -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(NEW.format(alias=alias, written=written))
    return load_policy(path)


@pytest.mark.parametrize(
    ("alias", "written", "factor"),
    [
        ("claude-opus-5: {price: claude-opus-4-6}", "", None),
        ("opus: {send: claude-opus-5-20270101, price: claude-opus-4-6}", "", None),
        ("claude-opus-5: {price: claude-opus-4-6}", ", image_token_factor: 3", Fraction(3)),
        ("claude-opus-5: {price: claude-opus-4-6}", ", image_token_factor: 0.5", Fraction(1, 2)),
        ("opus: {send: claude-opus-4-6-20260205, price: claude-opus-4-6}", "", Fraction(1)),
        ("opus: {send: claude-opus-4-6, price: claude-opus-4-6}", ", image_token_factor: 2", 2),
    ],
)
def test_an_alias_sent_as_a_model_with_no_published_rule_takes_only_a_written_factor(
    tmp_path: Path, alias: str, written: str, factor: Fraction | None
) -> None:
    """A model released after the published table, priced as its predecessor: the entry's
    published factor (Opus 4.6's 1,600 an image) is not the new model's rule, so only a factor
    the policy writes on the entry applies, else its images are refused. A dated snapshot of
    the entry's own model is that model."""
    pol = new_model(tmp_path, alias, written)
    name = alias.split(":")[0]
    price = pol.price_for(name)
    assert price is not None and price.name == "claude-opus-4-6"
    assert price.image_token_factor == factor
    entry = pol.models["claude-opus-4-6"]
    assert (price is entry) == (entry.image_token_factor == factor)


def test_an_azure_deployment_serves_its_entry_s_model_whatever_its_name(tmp_path: Path) -> None:
    pol = new_model(tmp_path, "claude-opus-5: {price: claude-opus-4-6}")
    price = pol.price_for("prod")
    assert price is pol.models["gpt-4o-mini"] and price.image_token_factor == Fraction(5667, 170)


def test_check_says_an_alias_s_images_are_refused_and_what_to_write(tmp_path: Path) -> None:
    text = describe(new_model(tmp_path, "claude-opus-5: {price: claude-opus-4-6}"))
    [line] = [line for line in text.splitlines() if line.strip().startswith("claude-opus-5 →")]
    assert "images refused: no image rule known for claude-opus-5; write image_token_factor" in (
        line
    ), line
    assert "models.claude-opus-4-6" in line, line
    written = new_model(
        tmp_path, "claude-opus-5: {price: claude-opus-4-6}", ", image_token_factor: 3"
    )
    [line] = [line for line in describe(written).splitlines() if "claude-opus-5 →" in line]
    assert "refused" not in line, line


def test_check_warns_of_a_claude_factor_below_its_published_rule_as_published_not_openai_s(
    tmp_path: Path,
) -> None:
    pol = policy(tmp_path, "  claude-opus-4-7: {input: 5, output: 25, image_token_factor: 1}")
    [warned] = warnings(pol)
    assert warned.startswith("models.claude-opus-4-7.image_token_factor: 1 is below the 2.99")
    assert "the published image rule for claude-opus-4-7" in warned and "OpenAI" not in warned
    assert warnings(aliased(tmp_path, written=", image_token_factor: 1")) == []
