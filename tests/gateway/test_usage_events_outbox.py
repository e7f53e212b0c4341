"""The outbox leaves no empty stream behind, and a sink that cannot work is refused when the
policy loads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from support import POLICY

from proxy.core.errors import PolicyError
from proxy.core.types import ReservationSettings
from proxy.policy import load_policy
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.open import Stores, open_store
from proxy.store.redis.layout import outbox_key

TENANT = BudgetLine("tenant", "acme", "USD", "month", 10**9)
WORKFLOW = BudgetLine("workflow", "w", "USD", "month", 10**9)
CALL = '{"request_id":"q1","model":"m","lines":[]}'


@asynccontextmanager
async def stores_on(store_url: str) -> AsyncIterator[Stores]:
    stores = open_store(store_url, ReservationSettings())
    try:
        yield stores
    finally:
        await stores.close()


async def test_an_acknowledged_outbox_leaves_no_key_behind(redis_url: str) -> None:
    """XDEL never deletes a stream: acknowledging deletes the tenant's `:outbox` once it is
    empty (lua/outbox_ack.lua), or every tenant that ever settled would keep a key forever."""
    async with stores_on(redis_url) as stores:
        ledger = stores.ledger
        for i in range(3):
            tenant = f"t{i}"
            line = BudgetLine("tenant", tenant, "USD", "month", 10**9)
            req = ReserveRequest(tenant, f"r{i}", [line], [Candidate({"USD": 5})])
            held = (await ledger.reserve(req)).reservation
            assert held is not None
            await ledger.commit(held, {"USD": 5}, event=CALL)
        await ledger.outbox_ack(await ledger.outbox_read(100))
        assert await ledger.outbox_read(100) == []
        client = ledger._client  # type: ignore[attr-defined]
        left = [k for i in range(3) if await client.exists(k := outbox_key(f"t{i}"))]
        assert left == [], f"empty outbox streams left behind: {left}"


@pytest.mark.parametrize(
    "sink",
    [
        "{type: openmeter, url: 'https://om.example', token_env: CYCLES_TEST_UNSET_TOKEN}",
        "{type: webhook, url: 'https://h.example/x', secret_env: CYCLES_TEST_UNSET_SECRET}",
        "{type: jsonl, path: /nonexistent/CYCLES_TEST_UNSET/usage.jsonl}",
    ],
)
def test_a_sink_that_cannot_work_is_refused_at_load(
    tmp_path: Path, sink: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink that could never take a batch (the environment variable naming its secret
    unset, a jsonl directory that does not exist) is refused when the policy loads, naming
    it, instead of failing every delivery while the outbox grows."""
    monkeypatch.delenv("CYCLES_TEST_UNSET_TOKEN", raising=False)
    monkeypatch.delenv("CYCLES_TEST_UNSET_SECRET", raising=False)
    text = POLICY.format(
        mode="enforce", budgets="      tenant: {limit: 100, period: month, unit: USD}", extra=""
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text + f"events:\n  sinks:\n    - {sink}\n")
    with pytest.raises(PolicyError, match="CYCLES_TEST_UNSET"):
        load_policy(path)
