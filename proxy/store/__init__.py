"""Where state lives, behind one store URL: the ledger (budgets), tenants, API keys and
client idempotency keys, on `memory://` or Redis (standalone or cluster).

Imports only `proxy.core`: the policy hands the store plain values (core.types)."""
