-- outbox_ack.lua: delete delivered entries from the tenant's usage-event outbox, and the stream
-- itself once it is empty (in the same step, so an entry a settle adds meanwhile is never lost
-- with it: it runs either before, and the stream is not empty, or after, and recreates it).
--
-- KEYS: the per-tenant keys (scripts.py); only 9 outbox is used
-- ARGV: 1..4 the common ones (unused), 5.. the ids of the delivered entries
--
-- Returns: the entries deleted. Safe to repeat.

local n = redis.call('XDEL', KEYS[9], unpack(ARGV, 5))
if redis.call('XLEN', KEYS[9]) == 0 then redis.call('DEL', KEYS[9]) end
return n
