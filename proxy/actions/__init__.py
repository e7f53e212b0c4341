"""Budgets for actions: anything an agent does that is not an LLM call (send an email, issue a
refund) reserves units of an action unit (RISK_POINTS, or an operator's: EMAILS) first, then
commits or releases.

    POST /v1/cycles/reservations               {action} | {unit, amount}, idempotency_key?, ttl?
                                               → 201 {id, status, action, amount, unit,
                                                 expires_at_ms, remaining}; 402 / 403 refusals
    GET  /v1/cycles/reservations/{id}          → the reservation as the store keeps it
    POST /v1/cycles/reservations/{id}/commit   {amount?} → 200 {id, status: COMMITTED, amount, …}
    POST /v1/cycles/reservations/{id}/release  → 200 {id, status: RELEASED, …}
    GET  /v1/cycles/balances                   → every budget line of the caller's scope path
                                                 now, and the remaining amount per unit

A reservation asks for `{"action": "send_email"}` (priced by the policy's `actions:` table) or
`{"unit": "RISK_POINTS", "amount": 30}` (a unit the policy knows). It reserves on every
`action_budgets:` line of the tenant's plan, in that unit, whose level the caller names, with
the same identity rules, ledger, reserve script and audit as an LLM call (no quotas: those count
model calls). An LLM call never reserves on an action budget; an action priced in USD reserves
on the plan's USD call budgets (with the tenant's overrides), as an LLM call would.

Ids are `act_` + 128 random bits. The store's record of a reservation lives under the tenant's
keys, so commit and release look it up there with the caller's tenant (any replica can settle
it, and another tenant's id is simply not found) and settle exactly what was reserved. Only the
scope that reserved it reads or settles it: the caller must name every budget level it holds,
with the same value, or it is not found either (another agent of the tenant cannot spend or free
its budget). The record also keeps the scope path it was reserved with, and a caller whose API
key pins a level (a key per agent) reaches only reservations made with the same value of it
(reserving.may_settle).

    commit   OPEN → COMMITTED (the given amount, default the reserved one)
             COMMITTED → the same answer again
             EXPIRED_CHARGED → COMMITTED, charging the difference from the expiry charge
             RELEASED / EXPIRED_RELEASED → 409: the caller said the action did not happen, or
                        its reservation was released at expiry (final: a commit racing either
                        is refused by the ledger too, final_release)
    release  OPEN → RELEASED; RELEASED / EXPIRED_RELEASED → the same answer again
             COMMITTED / EXPIRED_CHARGED → 409: a release cannot undo a charge
    either   no record when the script runs (gone since the lookup) → 404, nothing written
             (known_only: only a settle of an LLM call charges a record the store lost)

The ledger is never bypassed: an unreachable ledger is 503 whatever `fail_mode` says, because
an action reserved without a ledger could never be settled. `idempotency_key` (or the
`Idempotency-Key` header) works as for LLM calls (gateway/replay.py): a retry gets the first answer,
reserving nothing.

    asks.py       the request bodies, checked (400s)
    reserving.py  lines, reserve request, refusals, the Reservation rebuilt from its record
    views.py      JSON answers and log lines
    routes.py     the handlers
"""
