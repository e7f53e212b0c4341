-- commit.lua: charge what the provider reported and free the reservation, per its state.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due (common.lua)
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms, 4 audit_retention_ms (common.lua),
--       5 reservation id, 6 owner, 7 estimate 'USD=…,TOKENS=…', 8 actual (same form),
--       9 held concurrency fields 'q|conc|tenant|acme,…' ('-' for none), 10 '1' when a
--       release is final (actions: a RELEASED reservation is not charged), else '0',
--       11 n alert marks, 12.. n triples (field prefix, basis points, the `spent` that reaches
--       the threshold), then 12 + 3n.. the reservation's field prefixes (9 and those are used
--       only when the store lost the record).
--
-- Returns: state after ('COMMITTED', or 'RELEASED' when the release is final: nothing done),
-- first ('1' | '0'), charged (amounts form, may be
-- negative after EXPIRED_CHARGED: only actual - estimate is added then, see late_charge in
-- common.lua; per unit the most added to any line), then per alert
-- threshold this commit crossed first in its period: field prefix, basis points, spent after.
--
-- A threshold is crossed when spent before < mark <= spent after (common.lua cross_marks).

local id, owner, estimate, actual = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local MARKS = tonumber(ARGV[11])
local marks = {}
for i = 0, MARKS - 1 do
  marks[#marks + 1] = { ARGV[12 + 3 * i], ARGV[13 + 3 * i], tonumber(ARGV[14 + 3 * i]) }
end

local raw = redis.call('HGET', KEYS[3], id)
local r
if raw then
  r = parse_record(raw)
else
  r = missing_record(owner, estimate, ARGV[9], 12 + 3 * MARKS)
end

if r.state == 'COMMITTED' then return { 'COMMITTED', '0', r.actual } end
if r.state == 'RELEASED' and ARGV[10] == '1' then return { 'RELEASED', '0', '-' } end

local est, act = parse_amounts(r.amounts), parse_amounts(actual)
local charged, added = actual, act
if r.state == 'OPEN' or r.state == 'MISSING' then
  settle_lines(r.prefixes, est, act)
  free_held(r.held)
elseif r.state == 'EXPIRED_CHARGED' then
  local by_unit
  added, by_unit = late_charge(id, r.prefixes, est, act)
  charged = encode_amounts(by_unit)
else
  -- RELEASED, EXPIRED_RELEASED: nothing is reserved any more, but never under-record.
  settle_lines(r.prefixes, nil, act)
end
local fired = cross_marks(marks, added)
audit('commit', { 'reservation', id, 'from', r.state, 'state', 'COMMITTED',
  'actual', encode_amounts(act), 'charged', encode_amounts(parse_amounts(charged)) })
finish(id, r, 'COMMITTED', actual)
reindex()
local reply = { 'COMMITTED', '1', charged }
for _, x in ipairs(fired) do reply[#reply + 1] = x end
return reply
