-- release.lua: free a reservation without charging (the call produced no output).
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due, 8 users (common.lua),
--       9 outbox (outbox.lua)
-- ARGV: 1 idle TTLs, 2 period_grace_ms, 3 tombstone_ms, 4 retentions (common.lua),
--       5 reservation id, 6 owner, 7 estimate 'USD=…,TOKENS=…', 8 flags (common.lua has_flag:
--       'k' only a record the store knows is released; '-' for none), 9 the usage event's JSON
--       (outbox.lua; '-': events are off), 10 the outbox's bound, 11.. the reservation's field
--       prefixes (7 and 11..
--       are kept in the tombstone when the store lost the record).
--
-- An OPEN record frees its estimate and held concurrency. A record the store does not have
-- (MISSING: never reserved yet, its tombstone expired, or the store lost it) frees nothing: what
-- it reserved and held was settled at its expiry or lost with the store (common.lua
-- missing_record); the release leaves a RELEASED tombstone, so that a reserve of that id
-- arriving later (one the caller gave up on, gateway/spill.py) reserves nothing. With 'k' it writes
-- nothing at all.
--
-- Returns: state after (the state found when nothing was done: 'MISSING' under 'k'), first
-- ('1' | '0'), charged (always '-').

local id, owner, estimate, flags, event = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local bound = tonumber(ARGV[10])

local raw = redis.call('HGET', KEYS[3], id)
local r
if raw then
  r = parse_record(raw)
  if r.state ~= 'OPEN' then return { r.state, '0', '-' } end
  settle_lines(r.prefixes, parse_amounts(r.amounts), nil)
  free_held(r.held)
elseif has_flag(flags, 'k') then
  return { 'MISSING', '0', '-' }
else
  r = missing_record(owner, estimate, 11)
end
local eid = event_id(id, r.state)
audit('release', { 'reservation', id, 'state', 'RELEASED' })
finish(id, r, 'RELEASED', '-')
if event ~= '-' then
  outbox({ 'kind', 'settle', 'state', 'RELEASED', 'event', event, 'reservation', id, 'id', eid,
    'charged', '-' }, bound)
end
reindex()
return { 'RELEASED', '1', '-' }
