-- sweep.lua: resolve overdue reservations, forget expired tombstones and ledger entries.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms, 4 audit_retention_ms (common.lua),
--       5 on_expiry ('charge' | 'release'), 6 batch (max due reservations and max expired
--       entries handled by this call), 7.. owners known dead: their open reservations are
--       resolved at once, whatever their deadline.
--
-- Returns: resolved (reservations moved out of OPEN), more ('1' when a batch was full: call
-- again).
--
-- The dead-owner pass reads every record not yet due (open reservations and live
-- tombstones); the caller passes dead owners only until they have been reclaimed once.

local how, batch = ARGV[5], tonumber(ARGV[6])
local dead = {}
for i = 7, #ARGV do dead[ARGV[i]] = true end
local resolved = 0

local function expire(id, r)
  local est = parse_amounts(r.amounts)
  local state = (how == 'release') and 'EXPIRED_RELEASED' or 'EXPIRED_CHARGED'
  free_held(r.held)
  settle_lines(r.prefixes, est, (how ~= 'release') and est or nil)
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
return { fmt(resolved), (#due == batch or dropped == batch) and '1' or '0' }
