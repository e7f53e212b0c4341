-- rollup.lua: write the day's rollups a script gathered in ROLL (common.lua). Prepended after
-- audit.lua to the scripts that write them (reserve, commit, sweep), which call
-- roll_flush() before they return.
--
-- One hash per tenant and local day, 'cy:v1:{t:<tenant>}:day:<YYYYMMDD>' (store/redis/layout.py
-- day_key), its fields '<level>|<value>|<unit>|<period>|<kind>' (store/ledger/rollups.py reads
-- them): spent, csum (actuals committed), rsum (estimates reserved), calls, peak (most
-- reserved at once), vpeak (store/ledger/results.py DayRollup.value_peak), limit, shadow
-- (shadow calls it would have denied), 'deny|<reason>', 'degr|<rule>'. The day is the one of
-- NOW in DAY_OFFSET; the hash expires HISTORY ms after that day ends (PEXPIREAT in Redis
-- time: SKEW, a test's clock offset, taken off).
--
-- The key is built here rather than passed in KEYS: which day a settle falls on depends on
-- NOW and the offset the tenant's last reserve recorded, both read inside the script. It
-- carries the tenant's hash tag, as KEYS[1] does, so in a cluster it is in the slot the
-- script runs on.

local function roll_key(days)
  local y, m, d = civil(days)
  local base = string.match(KEYS[1], '^(.*):ledger$')
  return base .. string.format(':day:%04d%02d%02d', y, m, d)
end

-- Write what ROLL gathered: one HMGET of the fields added to or raised (and of the limit of
-- each row charged: a day on which a call reserved before midnight settles after it has no
-- reserve to record one, so the day before lends its own), one HSET, one PEXPIREAT.
local function roll_flush()
  if next(ROLL.sum) == nil and next(ROLL.top) == nil and next(ROLL.set) == nil then return end
  local days = math.floor((NOW + DAY_OFFSET * MINUTE) / DAY)
  local key = roll_key(days)
  local names = {}
  for f in pairs(ROLL.sum) do names[#names + 1] = f end
  for f in pairs(ROLL.top) do names[#names + 1] = f end
  local n = #names
  for row in pairs(ROLL.charged) do
    if not ROLL.set[row .. '|limit'] then names[#names + 1] = row .. '|limit' end
  end
  local cur = (#names > 0) and redis.call('HMGET', key, unpack(names)) or {}
  local out, wanted = {}, {}
  for i = 1, n do
    local f, old = names[i], tonumber(cur[i] or '0')
    out[#out + 1] = f
    out[#out + 1] = fmt(ROLL.sum[f] and (old + ROLL.sum[f]) or math.max(old, ROLL.top[f]))
  end
  for i = n + 1, #names do
    if not cur[i] then wanted[#wanted + 1] = names[i] end
  end
  if #wanted > 0 then
    local before = redis.call('HMGET', roll_key(days - 1), unpack(wanted))
    for i, f in ipairs(wanted) do
      out[#out + 1] = f
      out[#out + 1] = before[i] or '0'
    end
  end
  for f, v in pairs(ROLL.set) do
    out[#out + 1] = f
    out[#out + 1] = v
  end
  redis.call('HSET', key, unpack(out))
  redis.call('PEXPIREAT', key, fmt((days + 1) * DAY - DAY_OFFSET * MINUTE - SKEW + HISTORY))
end
