-- sweep.lua: resolve overdue reservations, forget expired tombstones and ledger entries.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms (common.lua),
--       4 on_expiry ('charge' | 'release'), 5 batch (max due reservations and max expired
--       entries handled by this call), 6.. owners known dead: their open reservations are
--       resolved at once, whatever their deadline.
--
-- Returns: resolved (reservations moved out of OPEN), more ('1' when a batch was full: call
-- again).
--
-- The dead-owner pass reads every record not yet due (open reservations and live
-- tombstones); the caller passes dead owners only until they have been reclaimed once.

local how, batch = ARGV[4], tonumber(ARGV[5])
local dead = {}
for i = 6, #ARGV do dead[ARGV[i]] = true end
local resolved = 0

local function expire(id, r)
  local est = parse_amounts(r.amounts)
  free_held(r.held)
  if how == 'release' then
    settle_lines(r.prefixes, est, nil)
    finish(id, r, 'EXPIRED_RELEASED', '-')
  else
    settle_lines(r.prefixes, est, est)
    finish(id, r, 'EXPIRED_CHARGED', '-')
  end
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
