-- rollup.lua: write the day's rollups a script gathered in ROLL (common.lua). Prepended after
-- audit.lua to the scripts that write them (reserve, commit, sweep), which call
-- roll_flush() before they return.
--
-- One hash per tenant and local day, 'cy:v1:{t:<tenant>}:day:<YYYYMMDD>' (store/redis/layout.py
-- day_key), its fields '<level>|<value>|<unit>|<period>|<kind>' (store/ledger/rollups.py reads
-- them): spent, csum (actuals committed), rsum (estimates reserved), calls, peak (most
-- reserved at once), vpeak (store/ledger/results.py DayRollup.value_peak), limit, shadow
-- (shadow calls it would have denied), 'deny|<reason>', 'degr|<rule>'; and '#|<level>|<value>',
-- '#|<level>' (roll_fold: the values of a structural level that keep a row, and how many).
-- Sums saturate at SAFE (roll_clamp). The day is the one of
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

-- Levels whose values come from a call's headers: the first VALUES values of each in a day
-- keep their own row (marked '#|<level>|<value>', counted in '#|<level>'); the rest are
-- summed in the level's '*' row, as runs and end users are (rollups.py BOUNDED).
local ROLL_BOUNDED = { workspace = true, app = true, workflow = true, agent = true,
  toolset = true }

-- The field `f` moved to its level's '*' row when its value is in `fold`, else `f` itself.
local function roll_folded(f, fold)
  local level, value, rest = string.match(f, '^([^|]*)|([^|]*)|(.*)$')
  if fold[level .. '|' .. value] then return level .. '|*|' .. rest end
  return f
end

-- Move into the '*' rows what ROLL gathered for values past the day's VALUES of their level
-- (in name order, so both stores keep the same ones); the marks and counts of the values
-- admitted are added to `out`.
local function roll_fold(key, out)
  local seen, list = {}, {}
  for _, t in ipairs({ ROLL.sum, ROLL.top, ROLL.set, ROLL.charged }) do
    for f in pairs(t) do
      local level, value = string.match(f, '^([^|]*)|([^|]*)|')
      if ROLL_BOUNDED[level] and value ~= '*' and not seen[level .. '|' .. value] then
        seen[level .. '|' .. value] = true
        list[#list + 1] = level .. '|' .. value
      end
    end
  end
  if #list == 0 then return end
  table.sort(list)
  local names = {}
  for i, lv in ipairs(list) do names[i] = '#|' .. lv end
  local marks, counts, fold = redis.call('HMGET', key, unpack(names)), {}, {}
  for i, lv in ipairs(list) do
    if not marks[i] then
      local level = string.match(lv, '^[^|]*')
      counts[level] = counts[level] or tonumber(redis.call('HGET', key, '#|' .. level) or '0')
      if counts[level] < VALUES then
        counts[level] = counts[level] + 1
        out[#out + 1] = names[i]
        out[#out + 1] = '1'
      else
        fold[lv] = true
      end
    end
  end
  for level, n in pairs(counts) do
    out[#out + 1] = '#|' .. level
    out[#out + 1] = fmt(n)
  end
  if next(fold) == nil then return end
  local sum, top, set, charged = ROLL.sum, ROLL.top, ROLL.set, ROLL.charged
  ROLL.sum, ROLL.top, ROLL.set, ROLL.charged = {}, {}, {}, {}
  for f, x in pairs(sum) do ROLL.add(roll_folded(f, fold), x) end
  for f, x in pairs(top) do ROLL.max(roll_folded(f, fold), x) end
  for f, origin in pairs(charged) do
    ROLL.charged[roll_folded(f .. '|', fold):sub(1, -2)] = origin
  end
  for f, v in pairs(set) do
    local g = roll_folded(f, fold)
    if g ~= f and string.sub(f, -6) == '|vpeak' then
      ROLL.max(g, tonumber(v))
    else
      ROLL.set[g] = v
    end
  end
end

-- A day's sum saturates at SAFE (2^53 - 1, the most a double holds exactly): figures past it
-- read "at least" (rollups.py), and a rollup never fails the write it records.
local function roll_clamp(x)
  return math.max(-SAFE, math.min(SAFE, x))
end

-- Write what ROLL gathered: one HMGET of the fields added to or raised (and of the limit of
-- each row charged: a day on which a call reserved earlier settles has no reserve to record
-- one, so the day the call was reserved on lends its own, else the day before), one HSET, one
-- PEXPIREAT.
local function roll_flush()
  if next(ROLL.sum) == nil and next(ROLL.top) == nil and next(ROLL.set) == nil then return end
  local days = math.floor((NOW + DAY_OFFSET * MINUTE) / DAY)
  local key = roll_key(days)
  local out, wanted = {}, {}
  roll_fold(key, out)
  local names = {}
  for f in pairs(ROLL.sum) do names[#names + 1] = f end
  for f in pairs(ROLL.top) do names[#names + 1] = f end
  local n = #names
  for row in pairs(ROLL.charged) do
    if not ROLL.set[row .. '|limit'] then names[#names + 1] = row .. '|limit' end
  end
  local cur = (#names > 0) and redis.call('HMGET', key, unpack(names)) or {}
  for i = 1, n do
    local f, old = names[i], tonumber(cur[i] or '0')
    out[#out + 1] = f
    local x = ROLL.sum[f] and (old + ROLL.sum[f]) or math.max(old, ROLL.top[f])
    out[#out + 1] = fmt(roll_clamp(x))
  end
  for i = n + 1, #names do
    if not cur[i] then
      local origin = ROLL.charged[string.sub(names[i], 1, -7)]
      if not origin or origin >= days then origin = days - 1 end
      wanted[origin] = wanted[origin] or {}
      table.insert(wanted[origin], names[i])
    end
  end
  for origin, fields in pairs(wanted) do
    local before = redis.call('HMGET', roll_key(origin), unpack(fields))
    for i, f in ipairs(fields) do
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
