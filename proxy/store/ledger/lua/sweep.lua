-- sweep.lua: resolve overdue reservations, forget expired tombstones and ledger entries, and
-- reclaim dead owners' open reservations; a bounded amount of each per call.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due, 8 users (common.lua),
--       9 outbox (outbox.lua)
-- ARGV: 1 idle TTLs, 2 period_grace_ms, 3 tombstone_ms, 4 retentions (common.lua),
--       5 on_expiry ('charge' | 'release'), 6 batch (max due reservations, max :resv records
--       scanned for dead owners and max expired entries handled by this call), 7 the tenant's
--       alert marks by level and unit, 'level|unit|basis points|spent that reaches it,…' ('-'
--       for none), 8 the HSCAN cursor of :resv where the pass over dead owners' reservations
--       resumes ('0' starts it; '-': no such pass), 9 how long (ms) a stuck expiry waits
--       before it is tried again, 10 the usage-event outbox's bound, to report each expiry
--       there (outbox.lua; '0': events are off), 11.. owners known dead: their open reservations are
--       resolved whatever their deadline.
--
-- Returns: resolved (reservations moved out of OPEN), more ('1' when a batch was full: call
-- again), the next dead-owner cursor ('0' when that pass is complete, '-' when none was asked),
-- stuck ('-', or '<reservation id> <field>' of the first stuck expiry: charging that reservation
-- would take the field out of the safe range), then per alert threshold an expiry charge
-- crossed first in its period: field prefix, basis points, spent after (as commit.lua: a
-- charge made here alerts like a commit).
--
-- An expiry charge goes into the day's rollups as spent (rollup.lua).
--
-- Each reservation's expiry is checked before it writes anything. A stuck one is left OPEN,
-- written nothing, and the call goes on with the others: one stuck reservation never holds
-- back the rest of its tenant's expiries. Where it was due, it is due again ARGV[9] ms later
-- (first in the due order otherwise, it would fill every batch), and reported each time it is
-- tried. HSCAN returns every record present for the whole pass at least once; one seen twice
-- is no longer OPEN and is skipped.

local how, batch, cursor, retry = ARGV[5], tonumber(ARGV[6]), ARGV[8], tonumber(ARGV[9])
local bound = tonumber(ARGV[10])
local events = bound > 0
local dead = {}
for i = 11, #ARGV do dead[ARGV[i]] = true end
local resolved, fired, stuck = 0, {}, nil

-- 'level|unit' -> { {basis points, mark}, … }
local marks_of = {}
if ARGV[7] ~= '-' then
  for _, m in ipairs(split_list(ARGV[7])) do
    local level, unit, bp, mark = string.match(m, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
    local key = level .. '|' .. unit
    marks_of[key] = marks_of[key] or {}
    table.insert(marks_of[key], { bp, tonumber(mark) })
  end
end

local function alert_on(prefixes, charge)
  local marks = {}
  for _, p in ipairs(prefixes) do
    for _, m in ipairs(marks_of[string.match(p, '^[^|]*') .. '|' .. unit_of(p)] or {}) do
      marks[#marks + 1] = { p, m[1], m[2] }
    end
  end
  for _, x in ipairs(cross_marks(marks, charge)) do fired[#fired + 1] = x end
end

-- Expire one OPEN record; false (and `stuck` set, if it is the first) when its charge would
-- leave the safe range: then nothing is written.
local function expire(id, r)
  local est = parse_amounts(r.amounts)
  local charge = (how ~= 'release') and est or nil
  local field = charge and out_of_range(r.prefixes, 'spent', charge)
  if field then
    stuck = stuck or (id .. ' ' .. field)
    return false
  end
  local state = charge and 'EXPIRED_CHARGED' or 'EXPIRED_RELEASED'
  ROLL.made(r.created)
  settle_lines(r.prefixes, est, charge)
  free_held(r.held)
  if charge then
    alert_on(r.prefixes, est)
    -- Which RESET_SPENT generation this charge belongs to (a late commit's refund needs it).
    local gen = generation('resets')
    if gen > 0 then
      redis.call('HSET', KEYS[1], GEN .. 'exp|' .. id, fmt(gen))
      keep(GEN .. 'exp|' .. id, NOW + TOMB)
    end
  end
  audit('expire', { 'reservation', id, 'state', state, 'amounts', encode_amounts(est) })
  if events then
    outbox({ 'kind', 'expire', 'reservation', id, 'charged', charge and encode_amounts(est) or '-',
      'fields', table.concat(r.prefixes, ','), 'owner', r.owner }, bound)
  end
  finish(id, r, state, '-')
  resolved = resolved + 1
  return true
end

local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(NOW), 'LIMIT', 0, batch)
for _, id in ipairs(due) do
  local raw = redis.call('HGET', KEYS[3], id)
  local r = raw and parse_record(raw)
  if r and r.state == 'OPEN' then
    if not expire(id, r) then redis.call('ZADD', KEYS[4], fmt(NOW + retry), id) end
  else
    redis.call('HDEL', KEYS[3], id, id .. '|scope')
    redis.call('ZREM', KEYS[4], id)
  end
end

if cursor ~= '-' then
  local page = redis.call('HSCAN', KEYS[3], cursor, 'COUNT', batch)
  cursor = page[1]
  local records = page[2]
  for i = 1, #records, 2 do
    local r = parse_record(records[i + 1])
    -- A stuck one stays OPEN until its deadline, when the due part above tries it again
    -- whoever owns it, and the rest of the page goes on: a stuck record never keeps the
    -- reclaim from the others (nor its owner listed: its deadline is what resolves it).
    if r.state == 'OPEN' and dead[r.owner] then expire(records[i], r) end
  end
end

local dropped = drop_expired(batch)
roll_flush()
reindex()
local more = #due == batch or dropped == batch
local reply = { fmt(resolved), more and '1' or '0', cursor, stuck or '-' }
for _, x in ipairs(fired) do reply[#reply + 1] = x end
return reply
