"""Fuzzing (hypothesis), on both stores (memory:// and a real redis-server): what clients send
and what the upstream answers, checked against the ledger as the store holds it.

Clients (fuzz_requests.py): four calls in five are valid calls on the budget path (models from
the policy, messages, tools, limits, choices, streams, scope headers, idempotency keys,
retries), the fifth malformed, in batches on a fresh tenant per example whose plan has small
budgets, quotas and degrade rules, so calls are admitted, capped, degraded and denied; the fake
provider generates all, half or none of each limit, reports cached tokens or not, sometimes
reports no stream usage, and sometimes fails. After every call, on the ledger read from the
store: nothing stays reserved; a forwarded call is charged exactly what the fake provider billed
for it, priced here with DESIGN.md's formula (never less, when the provider reported no usage),
on every budget line its headers name and no other; it reached the provider only while every
line held its reservation within the limit, and no line ends above its limit by more than its
calls' charges exceeded their reservations; a call not forwarded (refused 400, denied 402/429,
replayed) changes nothing. Whatever arrives, the proxy itself never answers 500.

Upstream (fuzz_answers.py): status, content type, a whole body or SSE events cut into chunks
anywhere, sometimes reset. Every reservation is settled; answers built from known parts are
charged exactly what DESIGN.md's rules say they show; raw garbage only must not break anything.

Each test prints how its calls ended (`pytest -rP` shows it) and fails if the strategies stop
reaching the budget path. The seed (fuzz_support.py): the default run uses a fixed one; for a
fresh seed, printed at the start and named in any failure:

    CYCLES_FUZZ_SEED=random pytest -q tests/gateway/test_fuzz.py
    CYCLES_FUZZ_EXAMPLES=5000 pytest -q tests/gateway/test_fuzz.py      # a soak, on a fresh seed
    too

`CYCLES_FUZZ_SEED=<seed>` (or `--hypothesis-seed=<seed>`) with the same CYCLES_FUZZ_EXAMPLES
replays a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from fuzz_answers import Garbage, ScriptedUpstream, expected_charge, garbage
from fuzz_requests import Call, calls
from fuzz_support import (
    EXAMPLES,
    Answer,
    Driver,
    Line,
    Outcomes,
    Sums,
    Unhandled,
    Watched,
    assert_not_ours,
    assert_openai_error,
    billed_amounts,
    catching_unhandled,
    drive,
    fuzz,
    ledger_lines,
    models_yaml,
    run_seed,
    run_seeded,
    scope_value,
    send,
)
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(0 if EXAMPLES else 600)
"""A soak runs as long as it takes; a failing quick run has time to shrink its example (each
step replays calls through the stack, which takes minutes at worst)."""

POLICY = """
mode: enforce
fail_mode: closed
identity: header
unknown_tenant: fuzz
upstreams:
  openai: {{base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}}
routes:
  - {{model: "*", upstream: openai}}
models:
{models}
plans:
  fuzz:
{plan}
"""
CALLS_PLAN = """
    default_max_tokens: 300
    budgets:
      tenant:   {limit: 0.006, period: month}
      workflow: {limit: 0.003, period: month}
      run:      {limit: 0.0015}
      agent:    {limit: 8000, period: day, unit: TOKENS}
    quotas:
      runs_per_day: 2
      steps_per_run: 2
      requests_per_minute: 6
      tokens_per_minute: 6000
      max_tokens_per_request: 3000
      models: ["gpt-4o*", "o3-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small"]
    degrade:
      - {when: {model_not_allowed: true}, set: {model: gpt-4o-mini}}
      - {when: {scope: run, remaining_below: "50%", model: gpt-4o}, set: {model: gpt-4o-mini}}
      - {when: {does_not_fit: true, model: gpt-4o-mini}, set: {fit: {min_tokens: 64}}}
"""
LIMITS = {
    ("tenant", "USD"): 600_000,
    ("workflow", "USD"): 300_000,
    ("run", "USD"): 150_000,
    ("agent", "TOKENS"): 8_000,
}
"""CALLS_PLAN's budgets in ledger units (USD: 10**8 a dollar)."""
BUDGET_HEADERS = {
    ("tenant", "USD"): "X-Cycles-Tenant",
    ("workflow", "USD"): "X-Cycles-Workflow",
    ("run", "USD"): "X-Cycles-Run",
    ("agent", "TOKENS"): "X-Cycles-Agent",
}
"""Each budgeted level of CALLS_PLAN, and the header that names its value."""
ROOMY_PLAN = """
    default_max_tokens: 300
    budgets:
      tenant: {limit: 1000000, period: month}
"""


@pytest.fixture
def unhandled() -> Iterator[Unhandled]:
    yield from catching_unhandled()


@pytest.fixture
def fuzz_seed(request: pytest.FixtureRequest) -> int:
    return run_seed(request.config.getoption("hypothesis_seed", None))


def write_policy(tmp_path: Path, plan: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(models=models_yaml(), plan=plan))
    return path


# -- clients --------------------------------------------------------------------------------------

provider_moods = st.builds(
    lambda fraction, cached, usage, failing: {
        "completion_fraction": fraction,
        "cached_tokens": cached,
        "send_usage": usage,
        "fail_every": failing,
    },
    st.sampled_from([1.0, 1.0, 0.5, 0.0]),
    st.sampled_from([0, 0, 7]),
    st.sampled_from([True, True, True, False]),
    st.sampled_from([0, 0, 0, 3]),
)
"""How the fake provider behaves for one example: how much of the limit it generates, cached
prompt tokens it reports, whether it honours include_usage, whether every third call fails."""


def test_fuzzed_calls_are_charged_what_the_provider_billed_and_refusals_change_nothing(
    store_url: str, tmp_path: Path, unhandled: Unhandled, fuzz_seed: int
) -> None:
    outcomes = Outcomes()
    fake = Watched()
    over: dict[tuple[str, Line], int] = {}
    """Per tenant and line: how far its calls' charges exceeded their reservations."""

    def check(driver: Driver) -> None:
        @fuzz(quick=100, seed_value=fuzz_seed)
        @given(mood=provider_moods, batch=st.lists(calls, min_size=2, max_size=10))
        def one(mood: dict[str, object], batch: list[Call]) -> None:
            fake.settings = dataclasses.replace(fake.settings, **mood)
            tenant = driver.fresh_tenant()
            for call in batch:
                for _ in range(2 if call.retried else 1):
                    outcomes.add(driver.run(_check_call(driver, call, tenant, unhandled, over)))

        run_seeded(f"fuzzed calls on {store_url}", fuzz_seed, one)

    drive(write_policy(tmp_path, CALLS_PLAN), store_url, fake, check)
    budget_path = outcomes.share(_on_budget_path)
    report = outcomes.report(f"fuzzed calls on {store_url}", on_the_budget_path=budget_path)
    print(report)
    assert budget_path >= 0.6, report
    statuses = outcomes.statuses()
    assert statuses[200] and statuses[402] and statuses[429], report


def _on_budget_path(label: str) -> bool:
    """Forwarded after a reservation (labelled with its ALLOW decision, whatever the provider
    then answered), or denied by a budget (402) or a quota (429)."""
    return "ALLOW" in label or label.startswith(("402 ", "429 "))


async def _check_call(
    driver: Driver,
    call: Call,
    example_tenant: str,
    unhandled: Unhandled,
    over: dict[tuple[str, Line], int],
) -> str:
    headers = call.headers_for(example_tenant)
    tenant = scope_value(headers, "X-Cycles-Tenant")
    driver.tenant = tenant or example_tenant
    before = await ledger_lines(driver.stack, driver.tenant)
    asked, billed = len(driver.fake.requests), len(driver.fake.billed)
    driver.at_upstream.clear()
    unhandled.records.clear()
    answer = await send(driver, call.path, call.body, headers)
    await driver.settled()
    assert_not_ours(answer, unhandled)
    after = await ledger_lines(driver.stack, driver.tenant)
    assert all(s.reserved == 0 for s in after.values()), after
    forwarded = len(driver.fake.requests) > asked
    decision = answer.headers.get("X-Cycles-Decision", "")
    replayed = answer.headers.get("X-Cycles-Replayed") == "true"
    assert forwarded == (decision.startswith("ALLOW") and not replayed), (answer, decision)
    if not forwarded:
        # Refused, denied or replayed: the provider saw nothing and the ledger did not move.
        assert after == before, (answer.status, answer.body)
        if answer.status >= 400:
            error = assert_openai_error(answer)
            assert not call.valid or answer.status not in (400, 413), (call, error)
            return f"{answer.status} {error['code'] or error['type']}"
        assert call.valid or replayed, (answer.status, answer.body)
        return f"{answer.status} replayed"
    assert tenant is not None
    (during,) = driver.at_upstream
    _check_admission(during)
    expected = billed_amounts(driver.fake.billed[billed:])
    reported = driver.fake.settings.send_usage or not call.stream
    budgeted = _lines_reserved(headers)
    for line in after.keys() | before.keys() | budgeted:
        charged = after.get(line, Sums()).spent - before.get(line, Sums()).spent
        if line not in budgeted:
            assert charged == 0, (line, charged)
            continue
        # Never less than the provider billed; exactly that when it reported its usage.
        want = expected[line[2]]
        assert charged == want if reported else charged >= want, (line, charged, want, answer)
        excess = charged - during.get(line, Sums()).reserved
        over[(tenant, line)] = over.get((tenant, line), 0) + max(0, excess)
    for line, sums in after.items():
        limit = LIMITS.get((line[0], line[2]))
        if limit is not None:
            assert sums.spent <= limit + sums.credit + over.get((tenant, line), 0), (line, sums)
    return f"{answer.status} {decision}"


def _check_admission(during: dict[Line, Sums]) -> None:
    """When the call reached the provider, every budget line held its reservation within the
    limit: spent + reserved <= limit + credit."""
    for line, sums in during.items():
        limit = LIMITS.get((line[0], line[2]))
        if limit is not None:
            assert sums.spent + sums.reserved <= limit + sums.credit, (line, sums)


def _lines_reserved(headers: dict[str, str]) -> set[Line]:
    """The budget lines a call with these headers reserves on: each level it names that has a
    budget (in that budget's unit), keyed by the level's value (DESIGN.md, "Derive scopes")."""
    lines = set()
    for (level, unit), header in BUDGET_HEADERS.items():
        value = scope_value(headers, header)
        if value is not None:
            lines.add((level, value, unit))
    return lines


# -- upstream garbage -----------------------------------------------------------------------------


def test_upstream_garbage_is_settled_at_exactly_what_the_answer_shows(
    store_url: str, tmp_path: Path, unhandled: Unhandled, fuzz_seed: int
) -> None:
    outcomes = Outcomes()
    fake = ScriptedUpstream()

    def check(driver: Driver) -> None:
        @fuzz(quick=250, seed_value=fuzz_seed)
        @given(case=garbage)
        def one(case: Garbage) -> None:
            outcomes.add(driver.run(_check_garbage(driver, fake, case, unhandled)))

        run_seeded(f"upstream garbage on {store_url}", fuzz_seed, one)

    drive(write_policy(tmp_path, ROOMY_PLAN), store_url, fake, check)
    exact = outcomes.share(lambda label: label.endswith("exact"))
    charged = outcomes.share(lambda label: label.endswith("charged, exact"))
    report = outcomes.report(
        f"upstream garbage on {store_url}", checked_exactly=exact, charged_a_known_amount=charged
    )
    print(report)
    assert exact >= 0.7 and charged >= 0.3, report


async def _check_garbage(
    driver: Driver, fake: ScriptedUpstream, case: Garbage, unhandled: Unhandled
) -> str:
    driver.tenant = driver.fresh_tenant()
    driver.at_upstream.clear()
    unhandled.records.clear()
    fake.script = case.script
    headers = {"X-Cycles-Tenant": driver.tenant}
    try:
        answer: Answer | None = await send(driver, case.path, case.request_body(), headers)
    except aiohttp.ClientPayloadError:
        # The upstream's body was cut or malformed and the proxy relayed it as it came.
        answer = None
    await driver.settled()
    assert not unhandled.records, [r.getMessage() for r in unhandled.records]
    if answer is not None:
        assert_not_ours(answer, unhandled)
        if answer.status != case.script.status:
            assert answer.status == 502, answer
            assert_openai_error(answer)
    lines = await ledger_lines(driver.stack, driver.tenant)
    assert all(s.reserved == 0 for s in lines.values()), lines
    assert all(s.spent >= 0 for s in lines.values()), lines
    (during,) = driver.at_upstream
    tenant_usd = ("tenant", driver.tenant, "USD")
    reserved, spent = during[tenant_usd].reserved, lines[tenant_usd].spent
    want = expected_charge(case, reserved)
    if want is not None:
        assert spent == want, (spent, want, reserved, case)
    status = "cut" if answer is None else answer.status
    check = "unchecked" if want is None else "exact"
    return f"{status} {case.kind}: {'charged' if spent else 'nothing'}, {check}"
