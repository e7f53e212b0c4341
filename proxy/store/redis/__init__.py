"""Redis plumbing shared by every store: the one client a process keeps (clients.py), the
pipelined wire for the hot path's scripts, the error table every Redis store declares
(errors.py), the store's own safety checks, single flight, and the key layout."""
