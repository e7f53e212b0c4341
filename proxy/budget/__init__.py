"""A call as the budget sees it: the priced call, its scope path, the one reserve request,
the tenant's directory entry and the decision the client sees. No I/O of its own."""
