-- release.lua: free a reservation without charging (the call produced no output).
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due (common.lua)
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms, 4 audit_retention_ms (common.lua),
--       5 reservation id, 6 owner, 7 estimate 'USD=…,TOKENS=…', 8 held concurrency fields
--       ('-' for none), 9.. the reservation's field prefixes (8 and 9.. are used only when the
--       store lost the record).
--
-- Returns: state after, first ('1' | '0'), charged (always '-').

local id, owner, estimate = ARGV[5], ARGV[6], ARGV[7]

local raw = redis.call('HGET', KEYS[3], id)
local r
if raw then
  r = parse_record(raw)
  if r.state ~= 'OPEN' then return { r.state, '0', '-' } end
else
  r = missing_record(owner, estimate, ARGV[8], 9)
end
settle_lines(r.prefixes, parse_amounts(r.amounts), nil)
free_held(r.held)
audit('release', { 'reservation', id, 'state', 'RELEASED' })
finish(id, r, 'RELEASED', '-')
reindex()
return { 'RELEASED', '1', '-' }
