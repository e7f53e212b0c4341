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
