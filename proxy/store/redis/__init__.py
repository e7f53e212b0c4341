"""Redis plumbing shared by every store: clients by URL, the pipelined wire for the hot
path's scripts, the store's own safety checks, single flight, and the key layout."""
