"""`cycles-proxy prices import|diff` as a user runs them: what goes to stdout and stderr, the
files written, and the exit status (diff: 0 equal, 1 different, 2 bad input)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CATALOGUES = Path(__file__).resolve().parent.parent / "policy" / "catalogues"
LITELLM = str(CATALOGUES / "litellm.json")
PORTKEY = str(CATALOGUES / "portkey.json")
BASE_POLICY = """
identity: header
upstreams:
  openai: {base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
routes:
  - {model: "*", upstream: openai}
plans:
  test: {budgets: {tenant: {limit: 5, period: month}}}
tenants:
  alpha: {plan: test}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "prices", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_prints_a_models_block_naming_its_source_and_reports_the_rest(
    tmp_path: Path,
) -> None:
    catalogue = tmp_path / "model_prices_and_context_window.json"
    catalogue.write_bytes(Path(LITELLM).read_bytes())
    os.utime(catalogue, (1_767_225_600, 1_767_225_600))  # 2026-01-01 UTC
    result = cli("import", str(catalogue), "--format", "litellm", "--models", "gpt-4*,deep-*")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "model_prices_and_context_window.json (LiteLLM's" in out
    assert "dated 2026-01-01" in out
    assert (
        '  gpt-4.1-mini:\n    input: "0.40"\n    cached_input: "0.10"\n    output: "1.60"\n' in out
    )
    assert "gpt-5:" not in out and "claude" not in out and "deep-thinker:" not in out
    assert "deep-thinker: left out: reasoning tokens" in result.stderr
    assert "gpt-4o: search_context_cost_per_query" in result.stderr


def test_import_output_writes_a_new_file_the_policy_loads_beside_the_rest(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(BASE_POLICY)
    models = tmp_path / "models.yaml"
    result = cli("import", PORTKEY, "--format", "portkey", "--output", str(models))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    check = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--policy", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert "gpt-5.4" in check.stdout

    again = cli("import", LITELLM, "--format", "litellm", "--output", str(models))
    assert again.returncode == 2
    assert "exists; name a new file" in again.stderr
    assert "Portkey" in models.read_text()


def test_diff_exits_0_when_equal_and_1_listing_each_difference(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        BASE_POLICY + "models:\n  gpt-4.1-mini: {input: 0.40, cached_input: 0.10, output: 1.60}\n"
    )
    same = cli("diff", LITELLM, "--format", "litellm", "--policy", str(policy))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "agree" in same.stdout
    assert "catalogue models are not in the policy" in same.stderr

    policy.write_text(BASE_POLICY + "models:\n  gpt-4.1-mini: {input: 0.40, output: 1.50}\n")
    args = ("diff", PORTKEY, "--format", "portkey", "--policy", str(policy), "--models", "gpt-4*")
    differs = cli(*args)
    assert differs.returncode == 1, differs.stderr
    assert differs.stdout.splitlines() == [
        "differs  gpt-4.1-mini: cached_input: policy 0.40, catalogue 0.10",
        "differs  gpt-4.1-mini: output: policy 1.50, catalogue 1.60",
        "missing  gpt-4o-audio-preview: in the catalogue, not priced in the policy",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("import", "missing.json", "--format", "litellm"), "missing.json: cannot read the file"),
        (("import", "{bad}", "--format", "litellm"), "not valid JSON"),
        (("import", "{list}", "--format", "litellm"), "the top level must be an object"),
        (("import", PORTKEY, "--format", "litellm"), "is --format litellm the file's format"),
        (("import", LITELLM, "--format", "portkey"), "is --format portkey the file's format"),
        (("import", LITELLM, "--format", "helicone"), "invalid choice: 'helicone'"),
        (("import", LITELLM, "--format", "litellm", "--models", "nope*"), "no model matches"),
        (("diff", LITELLM, "--format", "litellm", "--policy", "nowhere.yaml"), "nowhere.yaml"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "bad.json").write_text('{"gpt-4o": {"input_cost_per_token": 2.5e-06,')
    (tmp_path / "list.json").write_text("[]")
    named = {"{bad}": str(tmp_path / "bad.json"), "{list}": str(tmp_path / "list.json")}
    result = cli(*(named.get(a, a) for a in args))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
