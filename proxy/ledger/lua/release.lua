-- release.lua: free a reservation without charging (the call produced no output).
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms (common.lua),
--       4 reservation id, 5 owner, 6 estimate 'USD=…,TOKENS=…', 7 held concurrency fields
--       ('-' for none), 8.. the reservation's field prefixes (7 and 8.. are used only when the
--       store lost the record).
--
-- Returns: state after, first ('1' | '0'), charged (always '-').

local id, owner, estimate = ARGV[4], ARGV[5], ARGV[6]

local raw = redis.call('HGET', KEYS[3], id)
local r
if raw then
  r = parse_record(raw)
  if r.state ~= 'OPEN' then return { r.state, '0', '-' } end
else
  r = missing_record(owner, estimate, ARGV[7], 8)
end
settle_lines(r.prefixes, parse_amounts(r.amounts), nil)
free_held(r.held)
finish(id, r, 'RELEASED', '-')
return { 'RELEASED', '1', '-' }
