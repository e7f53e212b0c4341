-- quotas.lua: quota checks and counting for reserve.lua (prepended after common.lua), step
-- for step what proxy/store/ledger/quotas.py does in the memory store (its docstring lists the q|
-- fields of :ledger and their lifetimes).
--
-- Checks only read; a gate collects the first quota that denies and what admitting the call
-- will write, and count_quotas() writes it once the call is admitted. Uses idiv() and
-- per_million_floor() of candidates.lua, which is prepended before this file.

local WINDOW_US, RATE_KEEP_MS, CONCURRENCY_RETRY_MS = 60000000, 120000, 1000
local MAX_STEP_MINUTES = 10000000

local function counter(name)
  return tonumber(redis.call('HGET', hkey(name), name) or '0')
end

local function refuse(gate, quota, retry)
  if not gate.quota then gate.quota, gate.retry = quota, retry end
end

-- GCRA in integer µs, as quotas.gcra: a call moves the arrival time (field `name`) by
-- floor(60e6 * cost / limit), split as whole minutes of the rate plus
-- floor((cost mod limit) * 60 * 10^6 / limit) (limit < 2^43, checked before the store). A rate
-- that denies is not advanced.
local function rate(gate, quota, name, limit, cost)
  local minutes = idiv(cost, limit)
  local part = per_million_floor(60 * (cost - minutes * limit), limit, WINDOW_US)
  local step = math.min(minutes, MAX_STEP_MINUTES) * WINDOW_US + part
  local new_tat = math.max(counter(name), NOW_US) + step
  local over = new_tat - NOW_US - WINDOW_US
  if over > 0 then
    refuse(gate, quota, idiv(over + 999, 1000))
  else
    gate.rates[#gate.rates + 1] = { name, new_tat }
  end
end

-- Every quota but tokens_per_minute, in order: concurrency, runs per day, steps per run,
-- requests per minute (the tenant's, then each level's: 'q|rpm|<level>|<value>|tat').
local function check_quotas(q, run)
  local gate = { held = {}, run_fields = {}, rates = {} }
  for _, c in ipairs(q.conc) do
    local name = 'q|conc|' .. c.level .. '|' .. c.value
    gate.held[#gate.held + 1] = name
    if counter(name) >= c.limit then
      refuse(gate, 'concurrent_requests ' .. c.level, CONCURRENCY_RETRY_MS)
    end
  end
  if run and q.runs_per_day then
    local marker = 'q|run|' .. run .. '|day'
    gate.run_fields[#gate.run_fields + 1] = marker
    if redis.call('HEXISTS', KEYS[1], marker) == 0 then
      local today = period_id('day')
      gate.new_run = { marker, today }
      if counter('q|runs|' .. today) >= q.runs_per_day then
        refuse(gate, 'runs_per_day', period_end(today) - NOW)
      end
    end
  end
  if run and q.steps_per_run then
    local steps = 'q|run|' .. run .. '|steps'
    gate.run_fields[#gate.run_fields + 1] = steps
    if counter(steps) >= q.steps_per_run then refuse(gate, 'steps_per_run', 0) end
  end
  if q.rpm then rate(gate, 'requests_per_minute', 'q|rpm|tat', q.rpm, 1) end
  for _, r in ipairs(q.rates) do
    local name = 'q|rpm|' .. r.level .. '|' .. r.value .. '|tat'
    rate(gate, 'requests_per_minute ' .. r.level, name, r.limit, 1)
  end
  return gate
end

-- Count an admitted call against every quota it was checked against. The run's fields outlive
-- the call (open for up to `hold` ms) by the idle TTL.
local function count_quotas(gate, hold)
  for _, name in ipairs(gate.held) do redis.call('HINCRBY', hkey(name), name, 1) end
  if gate.new_run then
    local marker, today = gate.new_run[1], gate.new_run[2]
    local runs = 'q|runs|' .. today
    redis.call('HSET', KEYS[1], marker, today)
    redis.call('HINCRBY', KEYS[1], runs, 1)
    keep(runs, period_end(today) + GRACE)
  end
  for _, name in ipairs(gate.run_fields) do
    if string.sub(name, -6) == '|steps' then redis.call('HINCRBY', hkey(name), name, 1) end
    keep(name, NOW + hold + IDLE)
  end
  for _, r in ipairs(gate.rates) do
    redis.call('HSET', hkey(r[1]), r[1], fmt(r[2]))
    keep(r[1], NOW + RATE_KEEP_MS)
  end
end
