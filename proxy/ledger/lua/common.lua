-- common.lua: helpers prepended (by redis.py, at load time) to every per-tenant script.
--
-- KEYS (every script): 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta (see keys.py)
-- ARGV (every script): 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms; the rest per script.
--
-- Amounts are integers below 2^52 held in Lua doubles. They are only ever formatted with
-- fmt() (string.format '%d'): tostring, `..` on a number and cjson could print 1e+15.

local IDLE, GRACE, TOMB = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local DAY = 86400000

local function fmt(x)
  return string.format('%d', x)
end

-- Now, in ms and (for the rate quotas) in µs; both stay exact in doubles until the year 2112.
local NOW, NOW_US = (function()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end)()

-- Days since 1970-01-01 <-> proleptic Gregorian (y, m, d), after H. Hinnant's algorithms.
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = (mp < 10) and (mp + 3) or (mp - 9)
  return yoe + era * 400 + ((m <= 2) and 1 or 0), m, d
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m > 2) and (m - 3) or (m + 9)
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- 'm202611', 'd20261123' (UTC) or '-'.
local function period_id(period)
  if period == 'none' then return '-' end
  local y, m, d = civil(math.floor(NOW / DAY))
  if period == 'month' then return string.format('m%04d%02d', y, m) end
  if period == 'day' then return string.format('d%04d%02d%02d', y, m, d) end
  return error('unknown budget period ' .. period)
end

-- First millisecond after a period id.
local function period_end(pid)
  local y, m = tonumber(string.sub(pid, 2, 5)), tonumber(string.sub(pid, 6, 7))
  if string.sub(pid, 1, 1) == 'm' then
    if m == 12 then y, m = y + 1, 1 else m = m + 1 end
    return days_from_civil(y, m, 1) * DAY
  end
  return (days_from_civil(y, m, tonumber(string.sub(pid, 8, 9))) + 1) * DAY
end

-- An entry of :ledger_exp (a budget prefix or a q| field) may be dropped from `at` (ms) on;
-- a later expiry wins.
local function keep(name, at)
  redis.call('ZADD', KEYS[2], 'GT', fmt(at), name)
end

-- Period entries live until period end + grace, run entries for an idle TTL after their last
-- write, other entries without a period (lifetime budgets) for ever.
local function touch(prefix)
  local pid = string.match(prefix, '[^|]*$')
  if pid ~= '-' then
    keep(prefix, period_end(pid) + GRACE)
  elseif string.match(prefix, '^[^|]*') == 'run' then
    keep(prefix, NOW + IDLE)
  end
end

local function unit_of(prefix)
  return string.match(prefix, '^[^|]*|[^|]*|([^|]*)|')
end

-- 'USD=123,TOKENS=45' (or '-') <-> { USD = 123, TOKENS = 45 }
local function parse_amounts(text)
  local t = {}
  for unit, n in string.gmatch(text, '([^=,]+)=(%-?%d+)') do t[unit] = tonumber(n) end
  return t
end

local function encode_amounts(t)
  local units, parts = {}, {}
  for unit in pairs(t) do units[#units + 1] = unit end
  table.sort(units)
  for _, unit in ipairs(units) do parts[#parts + 1] = unit .. '=' .. fmt(t[unit]) end
  if #parts == 0 then return '-' end
  return table.concat(parts, ',')
end

-- 'a,b,c' (or '-') <-> { 'a', 'b', 'c' }: the held concurrency fields (they have no commas).
local function split_list(text)
  local t = {}
  if text == '-' then return t end
  for word in string.gmatch(text, '[^,]+') do t[#t + 1] = word end
  return t
end

local function join_list(t)
  if #t == 0 then return '-' end
  return table.concat(t, ',')
end

-- Reservation records (the values of :resv), one space-separated line; see reserve.lua.
local function parse_record(text)
  local tok = {}
  for word in string.gmatch(text, '%S+') do tok[#tok + 1] = word end
  local prefixes = {}
  for i = 9, #tok do prefixes[#prefixes + 1] = tok[i] end
  return { state = tok[1], created = tok[2], deadline = tok[3], owner = tok[4],
           outcome = tok[5], amounts = tok[6], actual = tok[7], held = tok[8],
           prefixes = prefixes }
end

local function save_record(id, r)
  local tok = { r.state, r.created, r.deadline, r.owner, r.outcome, r.amounts, r.actual, r.held }
  for _, p in ipairs(r.prefixes) do tok[#tok + 1] = p end
  redis.call('HSET', KEYS[3], id, table.concat(tok, ' '))
end

-- A record for a reservation the store no longer has, from what the caller still holds.
local function missing_record(owner, estimate, held, first_prefix)
  local prefixes = {}
  for i = first_prefix, #ARGV do prefixes[#prefixes + 1] = ARGV[i] end
  return { state = 'MISSING', created = fmt(NOW), deadline = fmt(NOW), owner = owner,
           outcome = '0:1:-:-:0:-', amounts = estimate, actual = '-', held = held,
           prefixes = prefixes }
end

-- A call that held concurrency ended: one less in flight per field, never below 0 (a field
-- back at 0 is deleted).
local function free_held(held)
  for _, f in ipairs(split_list(held)) do
    if redis.call('HINCRBY', KEYS[1], f, -1) <= 0 then redis.call('HDEL', KEYS[1], f) end
  end
end

-- Settle a record: it is remembered (a tombstone) for TOMB ms so repeats are idempotent.
local function finish(id, r, state, actual)
  r.state, r.actual = state, actual
  save_record(id, r)
  redis.call('ZADD', KEYS[4], fmt(NOW + TOMB), id)
end

-- For each prefix: reserved -= free[unit] (clamped at 0), spent += charge[unit] (signed).
local function settle_lines(prefixes, free, charge)
  for _, p in ipairs(prefixes) do
    local unit = unit_of(p)
    if free then
      local left = redis.call('HINCRBY', KEYS[1], p .. '|reserved', fmt(-(free[unit] or 0)))
      if left < 0 then redis.call('HSET', KEYS[1], p .. '|reserved', '0') end
    end
    if charge then redis.call('HINCRBY', KEYS[1], p .. '|spent', fmt(charge[unit] or 0)) end
    touch(p)
  end
end

-- Drop up to `limit` ledger entries whose expiry has passed (a budget prefix's three fields,
-- or one q| quota field); returns how many.
local function drop_expired(limit)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(NOW), 'LIMIT', 0, limit)
  for _, p in ipairs(gone) do
    if string.sub(p, 1, 2) == 'q|' then
      redis.call('HDEL', KEYS[1], p)
    else
      redis.call('HDEL', KEYS[1], p .. '|spent', p .. '|reserved', p .. '|credit')
    end
    redis.call('ZREM', KEYS[2], p)
  end
  return #gone
end

