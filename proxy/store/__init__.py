"""Where state lives, behind one store URL: `open.open_store(url)` opens every store on it, on
`memory://` or Redis (standalone or cluster), as one `Stores`:

    ledger/       budgets reserved atomically before a call, settled after it
    tenants/      tenant records, lifecycle and the audit trail, on the ledger's state
    api_keys/     tenants' API keys (gateway mode), and the cache in front of them
    replays.py    client idempotency keys of budgeted calls
    idempotency.py  idempotency keys of admin calls
    mcp_sessions.py which tenant bound which MCP session, and the request ids in flight in it
    redis/        Redis plumbing: the shared client, the wire, the error table, safety, key layout
    boundary.py   the error boundary every store declares once

Imports only `proxy.core`: the policy hands the store plain values (core.types)."""
