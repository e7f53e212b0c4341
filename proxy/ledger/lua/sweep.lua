-- sweep.lua: resolve overdue reservations, forget expired tombstones and ledger entries.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms, 4 audit_retention_ms (common.lua),
--       5 on_expiry ('charge' | 'release'), 6 batch (max due reservations and max expired
--       entries handled by this call), 7 the tenant's alert marks by level and unit,
--       'level|unit|basis points|spent that reaches it,…' ('-' for none), 8.. owners known
--       dead: their open reservations are resolved at once, whatever their deadline.
--
-- Returns: resolved (reservations moved out of OPEN), more ('1' when a batch was full: call
-- again), then per alert threshold an expiry charge crossed first in its period: field prefix,
-- basis points, spent after (as commit.lua: a charge made here alerts like a commit).
--
-- The dead-owner pass reads every record not yet due (open reservations and live
-- tombstones); the caller passes dead owners only until they have been reclaimed once.

local how, batch = ARGV[5], tonumber(ARGV[6])
local dead = {}
for i = 8, #ARGV do dead[ARGV[i]] = true end
local resolved, fired = 0, {}

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

local function expire(id, r)
  local est = parse_amounts(r.amounts)
  local state = (how == 'release') and 'EXPIRED_RELEASED' or 'EXPIRED_CHARGED'
  free_held(r.held)
  settle_lines(r.prefixes, est, (how ~= 'release') and est or nil)
  if how ~= 'release' then
    alert_on(r.prefixes, est)
    -- Which RESET_SPENT generation this charge belongs to (a late commit's refund needs it).
    local gen = generation('resets')
    if gen > 0 then
      redis.call('HSET', KEYS[1], GEN .. 'exp|' .. id, fmt(gen))
      keep(GEN .. 'exp|' .. id, NOW + TOMB)
    end
  end
  audit('expire', { 'reservation', id, 'state', state, 'amounts', encode_amounts(est) })
  finish(id, r, state, '-')
  resolved = resolved + 1
end

local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(NOW), 'LIMIT', 0, batch)
for _, id in ipairs(due) do
  local raw = redis.call('HGET', KEYS[3], id)
  local r = raw and parse_record(raw)
  if r and r.state == 'OPEN' then
    expire(id, r)
  else
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
  end
end

if next(dead) then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. fmt(NOW), '+inf')) do
    local raw = redis.call('HGET', KEYS[3], id)
    local r = raw and parse_record(raw)
    if r and r.state == 'OPEN' and dead[r.owner] then expire(id, r) end
  end
end

local dropped = drop_expired(batch)
local reply = { fmt(resolved), (#due == batch or dropped == batch) and '1' or '0' }
for _, x in ipairs(fired) do reply[#reply + 1] = x end
return reply
