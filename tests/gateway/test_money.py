"""Money end to end: a table of prices and token counts is charged exactly DESIGN.md's formula,
on both stores, including amounts near 2**52."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest
from support import TABLE, chat, chat_prompt_tokens, line, mini_cost, oracle, policy

from proxy.core.types import MAX_AMOUNT, ReservationSettings
from proxy.metering.pricing import Usage, amounts
from proxy.policy.prices import ModelPrice
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.open import open_store
from proxy.testing.local import local_stack

BIG_LIMIT = MAX_AMOUNT - 1


@pytest.mark.parametrize(("p", "prompt", "cached", "completion", "expected"), TABLE)
async def test_committed_cost_equals_the_formula_on_each_store(
    store_url: str, p: ModelPrice, prompt: int, cached: int, completion: int, expected: int
) -> None:
    usage = Usage(prompt, completion, cached)
    charge = amounts(p, usage)
    assert charge["USD"] == oracle(p, usage) == expected
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    try:
        line_ = BudgetLine("tenant", "acme", "USD", "month", BIG_LIMIT)
        result = await ledger.reserve(
            ReserveRequest("acme", "r1", [line_], [Candidate({"USD": 0, "TOKENS": 0})])
        )
        assert result.reservation is not None
        await ledger.commit(result.reservation, charge)
        [row] = await ledger.balances("acme")
        assert (row.spent, row.reserved) == (expected, 0)
        assert result.lines[0].remaining == BIG_LIMIT
    finally:
        await stores.close()


async def test_amounts_just_below_2_pow_52_add_up_exactly(store_url: str) -> None:
    stores = open_store(store_url, ReservationSettings())
    ledger = stores.ledger
    try:
        line_ = BudgetLine("tenant", "acme", "USD", "month", BIG_LIMIT)
        half = (MAX_AMOUNT - 2) // 2
        for rid in ("a", "b"):
            result = await ledger.reserve(
                ReserveRequest("acme", rid, [line_], [Candidate({"USD": half})])
            )
            assert result.allowed and result.reservation is not None
            await ledger.commit(result.reservation, {"USD": half})
        [row] = await ledger.balances("acme")
        assert row.spent == 2 * half == MAX_AMOUNT - 2
        denied = await ledger.reserve(ReserveRequest("acme", "c", [line_], [Candidate({"USD": 2})]))
        assert not denied.allowed and denied.lines[0].remaining == 1
    finally:
        await stores.close()


async def test_unknown_tenant_is_admitted_on_the_unknown_tenant_plan(tmp_path: Path) -> None:
    pol = dataclasses.replace(
        policy(tmp_path, "tenant: {limit: 50, period: month}"), unknown_tenant="test"
    )
    async with local_stack(pol) as stack, aiohttp.ClientSession() as session:
        async with session.post(
            f"{stack.url}/v1/chat/completions", json=chat(), headers={"X-Cycles-Tenant": "newco"}
        ) as r:
            assert r.status == 200
        row = await line(stack.ledger, "newco", "tenant")
        assert row.spent == mini_cost(chat_prompt_tokens(chat()), 100)
