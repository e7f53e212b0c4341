"""The HTTP side: a request's path through the proxy, and what reports on it.

The primitives, in the order a budgeted call meets them:

    handlers     one function per route (the app routes to them)
    admission    identify → admit: who calls, their tenant and its standing, the idempotency
                 claim, the reserve; what a store that is down or lost means (one table)
    pipeline     decide → forward → relay → settle, in a task shielded from the client
    settle       Flight: the one way a call settles; Settler writes it and emits CallSettled
    events       CallDecided, CallDenied, CallSettled on a small bus: observe (the call's log
                 line), metrics and alerts subscribe at startup
    context      Runtime (what a policy reload swaps) and the resources' typed AppKeys

Around them: streaming and sse, relay, replay, identity, spill (fail_mode: open), upkeep
(heartbeat, sweep, seeding, the settlement drain), and the listeners' own limits.
"""
