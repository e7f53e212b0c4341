"""The settling scripts are given every key they write in KEYS (the tenant's `:outbox` too):
Redis cluster proxies, Redis-compatible servers (Dragonfly refuses undeclared keys) and
key-level ACLs route or check a script by the keys it declares."""

from __future__ import annotations

from typing import Any

import hiredis

from proxy.core.types import ReservationSettings
from proxy.store.ledger.base import BudgetLine, Candidate, ReserveRequest
from proxy.store.open import open_store
from proxy.store.redis.layout import outbox_key

LINE = BudgetLine("tenant", "acme", "USD", "month", 10**9)
CALL = '{"request_id":"q1","model":"m","lines":["tenant|acme|USD|m1"]}'


async def test_the_commit_script_declares_every_key_it_writes(redis_url: str) -> None:
    stores = open_store(redis_url, ReservationSettings())
    ledger = stores.ledger
    scripts = ledger.scripts  # type: ignore[attr-defined]
    declared: list[list[str]] = []
    real = scripts.client.evalsha

    async def recording(sha: str, numkeys: int, *rest: Any) -> Any:
        declared.append([str(k) for k in rest[:numkeys]])
        return await real(sha, numkeys, *rest)

    real_wire = scripts._on_wire

    async def wire_recording(wire: Any, first: tuple[int, bytes], args: tuple[str, ...]) -> Any:
        reader = hiredis.Reader(encoding="utf-8")
        reader.feed(b"*%d\r\n%b" % first)
        command = reader.gets()
        numkeys = int(command[2])
        declared.append([str(k) for k in command[3 : 3 + numkeys]])
        return await real_wire(wire, first, args)

    scripts.client.evalsha = recording
    scripts._on_wire = wire_recording
    try:
        request = ReserveRequest("acme", "r1", [LINE], [Candidate({"USD": 5})])
        held = (await ledger.reserve(request)).reservation
        assert held is not None
        await ledger.commit(held, {"USD": 5}, event=CALL)
        client = ledger._client  # type: ignore[attr-defined]
        assert await client.xlen(outbox_key("acme")) == 1  # the script wrote it
        assert outbox_key("acme") in declared[-1], f"undeclared key written; KEYS={declared[-1]}"
    finally:
        scripts.client.evalsha = real
        scripts._on_wire = real_wire
        await stores.close()
