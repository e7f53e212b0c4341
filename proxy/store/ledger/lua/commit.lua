-- commit.lua: charge what the provider reported and free the reservation, per its state.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due, 8 users (common.lua),
--       9 outbox (outbox.lua)
-- ARGV: 1 idle TTLs, 2 period_grace_ms, 3 tombstone_ms, 4 retentions (common.lua),
--       5 reservation id, 6 owner, 7 estimate 'USD=…,TOKENS=…', 8 actual (same form),
--       9 flags (common.lua has_flag: 'f' a release is final, as an action's is; 'k' only a
--       record the store knows is settled; '-' for neither), 10 the usage event's JSON
--       (outbox.lua; '-': events are off), 11 the outbox's bound, 12 n alert marks, 13.. n
--       triples (field prefix, basis points, the `spent` that reaches the threshold), then
--       13 + 3n.. the
--       reservation's field prefixes (7 and those are used only when the store lost the
--       record).
--
-- By state:
--   OPEN             free the estimate and the held concurrency, charge the actual;
--   EXPIRED_CHARGED  add actual - estimate (late_charge in common.lua);
--   RELEASED, EXPIRED_RELEASED  charge the actual (nothing is reserved any more, and the
--                    ledger never under-records), or with 'f' do nothing: a release, once
--                    answered, is final (and an action's expiry under on_expiry: release too);
--   MISSING (no record: its tombstone expired, or the store lost it)  charge the actual on the
--                    caller's prefixes and nothing else: what it reserved and held was settled
--                    at its expiry or lost with the store, and freeing it again would free
--                    other calls' reservations and slots (an expiry charge may so be recorded
--                    twice: over, never under); with 'k' do nothing and write nothing.
--
-- Returns: state after ('COMMITTED'; the state found when nothing was done: 'RELEASED' or
-- 'EXPIRED_RELEASED' under 'f', 'MISSING' under 'k'), first ('1' | '0'), charged (amounts
-- form, may be negative after EXPIRED_CHARGED: only actual - estimate is added then, see
-- late_charge in common.lua; per unit the most added to any line), then per alert threshold
-- this commit crossed first in its period: field prefix, basis points, spent after.
--
-- A threshold is crossed when spent before < mark <= spent after (common.lua cross_marks).
-- The day's rollups (rollup.lua) get what each line was charged and the actual committed; the
-- outbox (outbox.lua) the usage event, with what this commit added to spent.

local id, owner, estimate, actual, flags = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local event, bound, MARKS = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
local marks = {}
for i = 0, MARKS - 1 do
  marks[#marks + 1] = { ARGV[13 + 3 * i], ARGV[14 + 3 * i], tonumber(ARGV[15 + 3 * i]) }
end

local raw = redis.call('HGET', KEYS[3], id)
local r
if raw then
  r = parse_record(raw)
elseif has_flag(flags, 'k') then
  return { 'MISSING', '0', '-' }
else
  r = missing_record(owner, estimate, 13 + 3 * MARKS)
end

if r.state == 'COMMITTED' then return { 'COMMITTED', '0', r.actual } end
local released = r.state == 'RELEASED' or r.state == 'EXPIRED_RELEASED'
if released and has_flag(flags, 'f') then return { r.state, '0', '-' } end

local est, act = parse_amounts(r.amounts), parse_amounts(actual)
ROLL.made(r.created)
local charged, added = actual, act
if r.state == 'OPEN' then
  settle_lines(r.prefixes, est, act)
  free_held(r.held)
elseif r.state == 'EXPIRED_CHARGED' then
  local by_unit
  added, by_unit = late_charge(id, r.prefixes, est, act)
  charged = encode_amounts(by_unit)
else
  -- MISSING, RELEASED, EXPIRED_RELEASED: nothing of it is reserved or held any more.
  settle_lines(r.prefixes, nil, act)
end
for _, p in ipairs(r.prefixes) do ROLL.add(ROLL.row(p) .. '|csum', act[unit_of(p)] or 0) end
local fired = cross_marks(marks, added)
local eid = event_id(id, r.state)
audit('commit', { 'reservation', id, 'from', r.state, 'state', 'COMMITTED',
  'actual', encode_amounts(act), 'charged', encode_amounts(parse_amounts(charged)) })
finish(id, r, 'COMMITTED', actual)
if event ~= '-' then
  outbox({ 'kind', 'settle', 'state', 'COMMITTED', 'event', event, 'reservation', id, 'id', eid,
    'charged', charged }, bound)
end
roll_flush()
reindex()
local reply = { 'COMMITTED', '1', charged }
for _, x in ipairs(fired) do reply[#reply + 1] = x end
return reply
