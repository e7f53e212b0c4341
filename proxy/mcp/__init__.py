"""Budgets for MCP tool calls: the proxy fronts the MCP servers the policy lists
(`mcp_servers:`) at `/mcp/{server}`, speaking MCP's Streamable HTTP transport, and reserves
before every `tools/call` with the same reserve script as every other call.

    POST   /mcp/{server}   one JSON-RPC message; its answer relayed as JSON or SSE
    GET    /mcp/{server}   the server's event stream, relayed as bytes
    DELETE /mcp/{server}   ends a session (and forgets its binding)

Identity is the LLM calls' (scope headers, or the tenant's key). A session id a server returns
is bound to the caller's tenant; another tenant presenting it is 404 before the server sees it.
A tools/call is checked (its tool name, hidden by the plan's `quotas.tools` or a firing hide
rule, unpriced), reserved, relayed, and settled by how it ended (outcome.py). A denial is a
tool result with `isError` naming the budget, so the model reads it and can stop. Events
(CallDecided, CallDenied, CallSettled) go out as for every call.

    jsonrpc.py   messages checked, the proxy's own JSON-RPC answers (no I/O)
    outcome.py   how a call ended, and whether that commits or releases (no I/O)
    pricing.py   the reserve request, the denial's text, the hide rules that fire
    upstream.py  headers both ways, sending, JSON and SSE answers relayed
    forward.py   a client request on its way (Hop), relaying what is not a tool call
    listing.py   which tools a caller sees; tools/list filtered
    sessions.py  session ids bound to tenants
    inflight.py  a request id in flight in its session, claimed in the store (one per id)
    calls.py     a tools/call: check, reserve, deny or relay
    settling.py  a tools/call relayed and settled
    routes.py    the handlers
"""
