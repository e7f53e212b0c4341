"""Policies: the shipped example, exact Decimal prices, errors that name file, line and field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from conftest import POLICIES

from proxy.core.errors import PolicyError
from proxy.core.types import UNITS_PER_USD
from proxy.policy import describe, load_policy
from proxy.policy.runtime import Budget
from proxy.policy.schema import compile_policy

BASE = """\
identity: {identity}
upstreams:
  openai:
    base_url: "https://api.openai.com/v1/"
    passthrough: {passthrough}
routes:
  - {{model: "*", upstream: openai}}
models:
  gpt-4o-mini: {{input: 0.15, cached_input: 0.075, output: 0.60}}
plans:
  pro:
    budgets:
      tenant: {{limit: 50, period: month}}
      run:    {{limit: 2}}
tenants:
  customer-47: {{plan: pro}}
"""


def base(identity: str = "header", passthrough: str = "[]") -> str:
    return BASE.format(identity=identity, passthrough=passthrough)


def broken(tmp_path: Path, text: str, name: str = "policy.yaml") -> tuple[str, str]:
    """Write `text`, whose faulty line is marked `# <-`; return the error and `name:line:`."""
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.endswith("# <-"))
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return str(caught.value), f"{path}:{line}:"


def test_example_policy_loads_with_every_plan_and_tenant() -> None:
    policy = load_policy(POLICIES / "example.yaml")
    assert set(policy.plans) == {"free", "starter", "pro", "enterprise"}
    assert policy.plans["pro"].budgets == (
        Budget("tenant", 50 * UNITS_PER_USD, "USD", "month"),
        Budget("workflow", 20 * UNITS_PER_USD, "USD", "month"),
        Budget("run", 2 * UNITS_PER_USD, "USD", "none"),
    )
    assert [b.level for b in policy.plans["enterprise"].budgets] == [
        "tenant",
        "workspace",
        "workflow",
        "agent",
        "run",
    ]
    assert policy.plans["free"].budgets[0] == Budget("tenant", UNITS_PER_USD, "USD", "day")
    assert policy.plan_for("customer-47") is policy.plans["pro"]
    assert policy.mode_for("shadow-co") == "shadow" and policy.mode_for("acme") == "enforce"
    assert policy.unknown_tenant is None and policy.plan_for("nobody") is None
    assert policy.upstream_for("gpt-4o") == policy.upstreams["openai"]
    assert policy.upstreams["openai"].api_key_env == "OPENAI_API_KEY"
    assert policy.limits.body_limit("/v1/embeddings") == 16 * 1024 * 1024
    assert policy.reservations.cap_ms == 1800 * 1000 and policy.timeouts.stream_total == 900


def test_example_prices_are_exact_integer_units() -> None:
    policy = load_policy(POLICIES / "example.yaml")
    mini = policy.models["gpt-4o-mini"]
    assert (mini.input, mini.cached_input, mini.output) == (15_000_000, 7_500_000, 60_000_000)
    instruct = policy.models["gpt-3.5-turbo-instruct"]
    assert instruct.cached_input == instruct.input == 150_000_000
    assert policy.models["text-embedding-3-small"].output == 0
    assert policy.models["gpt-4.1"].encoding == "o200k_base"
    assert policy.models["gpt-3.5-turbo-instruct"].encoding == "cl100k_base"


def test_the_policies_directory_loads_as_one_policy() -> None:
    assert load_policy(POLICIES).plans.keys() == load_policy(POLICIES / "example.yaml").plans.keys()


def test_decimal_prices_never_pass_through_float(tmp_path: Path) -> None:
    odd = "\n  odd: {input: 33554432.00000001, cached_input: 1.23456789, output: 0.1}"
    (tmp_path / "p.yaml").write_text(base().replace("0.60}", "0.60}" + odd))
    price = load_policy(tmp_path / "p.yaml").models["odd"]
    # Through a float, 33554432.00000001 * 10**8 comes out as 3355443200000000.
    assert price.input == 3_355_443_200_000_001
    assert (price.cached_input, price.output) == (123_456_789, 10_000_000)


def test_price_with_nine_decimals_is_refused(tmp_path: Path) -> None:
    text = base().replace("output: 0.60}", "output: 0.600000001}  # <-")
    message, where = broken(tmp_path, text)
    assert f"{where} models.gpt-4o-mini.output:" in message
    assert "more than 8 decimal places" in message


def test_floats_are_refused_when_a_policy_is_built_in_code() -> None:
    with pytest.raises(PolicyError, match=r"models\.m\.input: amounts must not be floats"):
        compile_policy({"models": {"m": {"input": 0.15, "output": Decimal("0.6")}}})


def test_tokens_budget_and_unknown_tenant_plan(tmp_path: Path) -> None:
    text = base().replace("run:    {limit: 2}", "agent: {limit: 100000, unit: TOKENS}")
    (tmp_path / "p.yaml").write_text("unknown_tenant: pro\n" + text)
    policy = load_policy(tmp_path / "p.yaml")
    assert Budget("agent", 100_000, "TOKENS", "month") in policy.plans["pro"].budgets
    assert policy.plan_for("stranger") is policy.plans["pro"]


def test_base_url_loses_trailing_slash_and_tenant_ids_are_lowercase_text(tmp_path: Path) -> None:
    text = base().replace("customer-47:", "Customer-47:") + "  47: {plan: pro}\n"
    (tmp_path / "p.yaml").write_text(text)
    policy = load_policy(tmp_path / "p.yaml")
    assert policy.upstreams["openai"].base_url == "https://api.openai.com/v1"
    assert list(policy.tenants) == ["customer-47", "47"]  # a YAML int key is still a tenant id


BROKEN = {
    "unknown field": (
        base().replace("tenant: {limit: 50, period: month}", "tenant: {limt: 50}  # <-"),
        "plans.pro.budgets.tenant.limt: unknown field; expected one of: limit, period, unit",
    ),
    "unknown top-level field": (
        "modes: enforce  # <-\n" + base(),
        "modes: unknown field; expected one of: mode,",
    ),
    "bad level": (
        base().replace("run:    {limit: 2}", "tenat: {limit: 2}  # <-"),
        "plans.pro.budgets.tenat: unknown level 'tenat'; levels are tenant, workspace,",
    ),
    "route to a missing upstream": (
        base().replace('{model: "*", upstream: openai}', '{model: "*", upstream: opnai}  # <-'),
        "routes[0].upstream: upstream 'opnai' is not defined; defined upstreams: openai",
    ),
    "tenant on an unknown plan": (
        base().replace("{plan: pro}", "{plan: gold}  # <-"),
        "tenants.customer-47.plan: plan 'gold' is not defined; defined plans: pro",
    ),
    "unknown_tenant names no plan": (
        "unknown_tenant: gold  # <-\n" + base(),
        "unknown_tenant: 'gold' is neither 'deny' nor a plan",
    ),
    "negative limit": (
        base().replace("{limit: 50, period: month}", "{limit: -5, period: month}  # <-"),
        "plans.pro.budgets.tenant.limit: Input should be greater than or equal to 0",
    ),
    "limit at 2**52 units": (
        base().replace("{limit: 50, period: month}", "{limit: 50000000, period: month}  # <-"),
        "plans.pro.budgets.tenant.limit: limit 50000000 USD is 5e15 units, at or above 2**52; "
        "the ledger's Lua scripts hold amounts as doubles",
    ),
    "tokens limit at 2**52": (
        base().replace("{limit: 2}", f"{{limit: {2**52}, unit: TOKENS}}  # <-"),
        "plans.pro.budgets.run.limit: limit 4503599627370496 TOKENS is 4.5e15 units, at or above",
    ),
    "price at 2**52 units": (
        base().replace("input: 0.15,", "input: 45035996.27370496,  # <-\n   "),
        "models.gpt-4o-mini.input: price 45035996.27370496 USD per 1M tokens is 4.5e15 units",
    ),
    "run budget with a period": (
        base().replace("run:    {limit: 2}", "run: {limit: 2, period: day}  # <-"),
        "plans.pro.budgets.run.period: a run budget has no period (got 'day')",
    ),
    "passthrough of /files in api_key mode": (
        base("api_key", '["/audio/speech", "/files"]  # <-'),
        "upstreams.openai.passthrough[1]: '/files' reaches stored objects",
    ),
    "passthrough of a stored response in api_key mode": (
        base("api_key", "\n      - /responses/r1  # <-"),
        "upstreams.openai.passthrough[0]: '/responses/r1' reaches stored objects",
    ),
    "passthrough of a budgeted endpoint": (
        base(passthrough='["/chat"]  # <-'),
        "passthrough[0]: '/chat' would forward the budgeted endpoint /chat/completions",
    ),
    "passthrough with a dot segment": (
        base(passthrough='["/audio/../files"]  # <-'),
        "upstreams.openai.passthrough[0]: '/audio/../files' is not a plain path",
    ),
    "base_url with a query": (
        base().replace('"https://api.openai.com/v1/"', '"https://x.test/v1?k=1"  # <-'),
        "upstreams.openai.base_url: base_url must not have a query or a fragment",
    ),
    "invalid tenant id": (
        base().replace("customer-47: {plan: pro}", '"customer 47": {plan: pro}  # <-'),
        "tenants.customer 47: tenant id 'customer 47' is invalid",
    ),
    "missing field": (
        base().replace("{plan: pro}", "{mode: shadow}  # <-"),
        "tenants.customer-47.plan: required field is missing",
    ),
    "YAML syntax error": (
        base().replace("{limit: 2}", "{limit: 2\n      x: 1  # <-"),
        "(while parsing a flow mapping at line 14)",
    ),
    "fractional TOKENS limit": (
        base().replace("{limit: 2}", "{limit: 2.5, unit: TOKENS}  # <-"),
        "plans.pro.budgets.run.limit: limit 2.5 TOKENS is not a whole number",
    ),
    "cached input dearer than input": (
        base().replace("cached_input: 0.075, output: 0.60}", "cached_input: 0.2, output: 1}  # <-"),
        "models.gpt-4o-mini.cached_input: cached_input (0.2) is more than input (0.15)",
    ),
    "unknown encoding": (
        base().replace("output: 0.60}", "output: 0.60, encoding: p50k_base}  # <-"),
        "models.gpt-4o-mini.encoding: unknown encoding 'p50k_base'; use one of",
    ),
    "api_key_env that is not a variable name": (
        base().replace("passthrough:", "api_key_env: $OPENAI_KEY  # <-\n    passthrough:"),
        "upstreams.openai.api_key_env: '$OPENAI_KEY' is not an environment variable name",
    ),
    "a plan called deny": (
        base().replace("  pro:\n", "  pro:\n    budgets: {}\n  deny:  # <-\n", 1),
        "plans.deny: a plan cannot be called 'deny'",
    ),
    "reservation cap shorter than a stream": (
        base() + "timeouts:\n  stream_total: 3600  # <-\n",
        "timeouts.stream_total: reservations.cap_seconds (1800) must exceed timeouts.connect + "
        "timeouts.first_byte + timeouts.stream_total + timeouts.drain_after_disconnect "
        "(10 + 120 + 3600 + 60 = 3790)",
    ),
    "reservation cap shorter than a route's stream": (
        base().replace(
            "upstream: openai}", "upstream: openai, timeouts: {stream_total: 3600}}  # <-"
        ),
        "routes[0].timeouts.stream_total: reservations.cap_seconds (1800) must exceed "
        "timeouts.connect + timeouts.first_byte + routes[0].timeouts.stream_total + "
        "timeouts.drain_after_disconnect (10 + 120 + 3600 + 60 = 3790)",
    ),
    "a route timeout that is not the upstream's": (
        base().replace("upstream: openai}", "upstream: openai, timeouts: {read_request: 5}}  # <-"),
        "routes[0].timeouts.read_request: unknown field; expected one of: connect, first_byte, "
        "chunk_idle, stream_total",
    ),
    "a route timeout that is not positive": (
        base().replace("upstream: openai}", "upstream: openai, timeouts: {first_byte: 0}}  # <-"),
        "routes[0].timeouts.first_byte: Input should be greater than 0",
    ),
    "reservation cap shorter than connecting, the first byte, the stream and the drain": (
        base() + "timeouts:\n  stream_total: 1700  # <-\n",
        "timeouts.stream_total: reservations.cap_seconds (1800) must exceed timeouts.connect + "
        "timeouts.first_byte + timeouts.stream_total + timeouts.drain_after_disconnect "
        "(10 + 120 + 1700 + 60 = 1890), or an open reservation would expire while its stream "
        "is still running",
    ),
    "run entries that would expire under an open call": (
        base() + "reservations: {run_idle_seconds: 60}  # <-\n",
        "reservations.run_idle_seconds: reservations.run_idle_seconds (60) must exceed "
        "cap_seconds (1800), or a run's budget and counters could expire while one of its calls "
        "is still open",
    ),
    "tombstone shorter than the cap": (
        base() + "reservations: {tombstone_seconds: 600}  # <-\n",
        "reservations.tombstone_seconds: reservations.tombstone_seconds (600) must be at least",
    ),
    "top level is not a mapping": (
        "- mode: enforce  # <-\n",
        "the top level must be a mapping of sections",
    ),
    "duplicate key in one file": (
        base() + "  customer-47: {plan: pro}  # <-\n",
        "duplicate key 'customer-47' (first at line 16)",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_policy_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    text, expected = BROKEN[case]
    message, where = broken(tmp_path, text)
    assert message.startswith(where), message
    assert expected in message, message


def test_passthrough_of_files_is_allowed_in_header_mode(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(base(passthrough='["/files", "/audio/speech"]'))
    assert load_policy(tmp_path / "p.yaml").upstreams["openai"].passthrough == (
        "/files",
        "/audio/speech",
    )


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    text = base().replace("{plan: pro}", "{plan: gold}").replace("openai}", "x}")
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "p.yaml")
    lines = str(caught.value).splitlines()
    fields = [line.split(": ")[1] for line in lines]
    assert fields == ["routes[0].upstream", "tenants.customer-47.plan"]


def split(tmp_path: Path) -> Path:
    """The base policy as a directory: connectivity in one file, plans and tenants in another."""
    text = base()
    head, tail = text.split("plans:\n")
    (tmp_path / "10-upstreams.yaml").write_text(head)
    (tmp_path / "20-plans.yml").write_text("plans:\n" + tail)
    (tmp_path / ".#20-plans.yml").write_text("not: [valid")  # an editor's lock file: skipped
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_directory_files_merge_and_routes_concatenate_in_file_order(tmp_path: Path) -> None:
    directory = split(tmp_path)
    (directory / "30-more.yaml").write_text(
        "routes:\n  - {model: 'gpt-*', upstream: local}\n"
        "upstreams:\n  local: {base_url: 'http://127.0.0.1:9000/v1'}\n"
        "tenants:\n  acme: {plan: pro}\n"
    )
    policy = load_policy(directory)
    assert [r.upstream for r in policy.routes] == ["openai", "local"]
    assert set(policy.tenants) == {"customer-47", "acme"}
    assert set(policy.upstreams) == {"openai", "local"}
    assert policy.source == str(directory)


def test_error_in_a_directory_names_the_file_it_is_in(tmp_path: Path) -> None:
    directory = split(tmp_path)
    (directory / "30-more.yaml").write_text(
        "tenants:\n  acme: {plan: pro}\n  initech: {plan: gold}\n"
        "routes:\n  - {model: x, upstream: nope}\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(directory)
    message = str(caught.value)
    assert f"{directory / '30-more.yaml'}:3: tenants.initech.plan: plan 'gold'" in message
    assert f"{directory / '30-more.yaml'}:5: routes[1].upstream: upstream 'nope'" in message


def test_a_name_defined_in_two_files_is_an_error_naming_both(tmp_path: Path) -> None:
    directory = split(tmp_path)
    (directory / "30-dup.yaml").write_text("# again\nplans:\n  pro: {budgets: {}}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(directory)
    message = str(caught.value)
    assert message.startswith(f"{directory / '30-dup.yaml'}:3: plans.pro: already defined in ")
    assert f"{directory / '20-plans.yml'}:2;" in message


def test_a_setting_made_in_two_files_is_an_error(tmp_path: Path) -> None:
    directory = split(tmp_path)
    (directory / "30-mode.yaml").write_text("identity: api_key\n")
    with pytest.raises(PolicyError, match=r"30-mode\.yaml:1: identity: already set in .*10-up"):
        load_policy(directory)


def test_empty_directory_and_missing_path_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no \*\.yaml or \*\.yml files"):
        load_policy(tmp_path)
    with pytest.raises(PolicyError, match="no such file or directory"):
        load_policy(tmp_path / "absent.yaml")


def test_describe_says_what_the_example_enforces() -> None:
    text = describe(load_policy(POLICIES / "example.yaml"))
    for expected in (
        "mode: enforce",
        "unknown tenants: denied (403)",
        "* → openai",
        "gpt-4o-mini             0.15 / 0.075 / 0.60",
        "tenant     50.00 USD per month",
        "run        0.10 USD per run",
        "tenant     1.00 USD per day",
        "shadow-co    pro (shadow)",
    ):
        assert expected in text, expected


def test_route_timeouts_override_the_policy_for_that_route_only(tmp_path: Path) -> None:
    text = base().replace(
        '  - {model: "*", upstream: openai}',
        '  - {model: "o*", upstream: openai, timeouts: {first_byte: 300, stream_total: 1800}}\n'
        '  - {model: "*", upstream: openai}',
    )
    text += "timeouts: {connect: 5}\nreservations: {cap_seconds: 3600, tombstone_seconds: 7200}\n"
    (tmp_path / "p.yaml").write_text(text)
    policy = load_policy(tmp_path / "p.yaml")
    slow = policy.timeouts_for("o3-mini")
    assert (slow.connect, slow.first_byte, slow.stream_total) == (5, 300, 1800)
    assert slow.read_request == policy.timeouts.read_request
    assert policy.timeouts_for("gpt-4o-mini") is policy.timeouts
    assert policy.route_for("o3-mini") is policy.routes[0]
    assert policy.routes[1].timeouts is None
    assert "timeouts (s): connect 5, first_byte 300, chunk_idle 60, stream_total 1800" in (
        describe(policy)
    )


def test_reservation_cap_is_checked_against_the_longest_route_stream(tmp_path: Path) -> None:
    text = base().replace("upstream: openai}", "upstream: openai, timeouts: {stream_total: 1800}}")
    message, where = broken(tmp_path, text + "reservations: {cap_seconds: 1800}  # <-\n")
    assert message.startswith(where), message
    assert "reservations.cap_seconds: reservations.cap_seconds (1800) must exceed " in message
    assert (
        "timeouts.connect + timeouts.first_byte + routes[0].timeouts.stream_total + "
        "timeouts.drain_after_disconnect (10 + 120 + 1800 + 60 = 1990)" in message
    )


def test_history_retention_reaches_the_stores_in_days(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(base())
    assert load_policy(tmp_path / "p.yaml").reservations.history_retention_ms == 400 * 86_400_000
    (tmp_path / "p.yaml").write_text(base() + "history: {retention_days: 30}\n")
    policy = load_policy(tmp_path / "p.yaml")
    assert policy.reservations.history_retention_ms == 30 * 86_400_000
    assert "History: each day's rollups kept 30 days" in describe(policy)


@pytest.mark.parametrize("days", ["0", "3661", "1.5"])
def test_a_history_retention_out_of_range_is_refused(tmp_path: Path, days: str) -> None:
    message, where = broken(tmp_path, base() + f"history: {{retention_days: {days}}}  # <-\n")
    assert where in message
    assert "history.retention_days" in message


def test_history_values_per_level_reach_the_stores(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(base())
    assert load_policy(tmp_path / "p.yaml").reservations.history_values_per_level == 100
    (tmp_path / "p.yaml").write_text(base() + "history: {values_per_level: 7}\n")
    policy = load_policy(tmp_path / "p.yaml")
    assert policy.reservations.history_values_per_level == 7
    assert "7 values per structural level" in describe(policy)


@pytest.mark.parametrize("values", ["0", "10001", "2.5"])
def test_history_values_per_level_out_of_range_are_refused(tmp_path: Path, values: str) -> None:
    message, where = broken(tmp_path, base() + f"history: {{values_per_level: {values}}}  # <-\n")
    assert where in message
    assert "history.values_per_level" in message
