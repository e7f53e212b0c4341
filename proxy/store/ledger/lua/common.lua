-- common.lua: helpers prepended (by redis.py, at load time) to every per-tenant script.
--
-- KEYS (every script): 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due
-- (the due index: tenant -> earliest due time, in the tenant's slot; keys.py)
-- ARGV (every script): 1 idle TTLs '<run_idle_ms>:<user_idle_ms>', 2 period_grace_ms,
-- 3 tombstone_ms, 4 history settings '<audit_retention_ms>:<history_retention_ms>:
-- <history_values_per_level>'; the rest per script.
--
-- NOW is Redis TIME plus the tenant's `clock_offset_ms` (tests only), so deadlines, periods and
-- audit ids agree. The calendar is UTC + OFFSET and month periods follow ANCHOR: a script that
-- knows them (reserve, adjust, reset, update) sets them and EXACT; settling scripts do not, so
-- they keep a period entry they create until a safe bound (see calendar.py period_bound_ms).
--
-- Amounts are integers below 2^52 held in Lua doubles. They are only ever formatted with
-- fmt() (string.format '%d'): tostring, `..` on a number and cjson could print 1e+15. The sums
-- kept in :ledger (spent, reserved, credit) stay within [-SAFE, SAFE]: a script checks every
-- sum it will change (guard) before it writes anything, and refuses the whole call otherwise
-- (error OUT_OF_RANGE). Counters that step by one (q|…) cannot get there.

local IDLE, UIDLE = (function()
  local run, user = string.match(ARGV[1], '^(%d+):(%d+)$')
  return tonumber(run), tonumber(user)
end)()
local GRACE, TOMB = tonumber(ARGV[2]), tonumber(ARGV[3])
local RETAIN, HISTORY, VALUES = (function()
  local audit, history, values = string.match(ARGV[4], '^(%d+):(%d+):(%d+)$')
  return tonumber(audit), tonumber(history), tonumber(values)
end)()
local DAY, MINUTE = 86400000, 60000
local OFFSET, ANCHOR, EXACT = 0, { day = 1, since = 0 }, false
-- Periods held across a time-zone change, by kind ('day', 'month'): { pid, till } (calendar.py
-- Hold), loaded with the anchor.
local HOLD = {}
local SAFE = 9007199254740991 -- 2^53 - 1
local TENANT = string.match(KEYS[1], '{t:([^}]*)}')

local function fmt(x)
  return string.format('%d', x)
end

-- The hash that holds a ledger field: an end user's entries (their lines, their concurrency,
-- request rate and reset generation fields, and the per-minute counts of their budget denials,
-- 'q|agg|<minute>|<reason>|user|<value>') are in :users (KEYS[8]), so that the tenant's own
-- lines (:ledger, KEYS[1]) are read without walking them (store/redis/layout.py user_field,
-- which says the same for Python).
local USER_FIELDS = { 'user|', 'q|conc|user|', 'q|rpm|user|', 'q|gen|reset|user|' }
local function hkey(field)
  for _, head in ipairs(USER_FIELDS) do
    if string.sub(field, 1, #head) == head then return KEYS[8] end
  end
  if string.match(field, '^q|agg|%d+|[^|]*|user|') then return KEYS[8] end
  return KEYS[1]
end

-- Now, in ms and (for the rate quotas) in µs; both stay exact in doubles until the year 2112.
-- SKEW: the tenant's clock offset (the due index is kept in Redis time, without it).
-- DAY_OFFSET: the utc offset (minutes) the tenant's last reserve was made in, which places the
-- writes of every script in the tenant's local day (rollup.lua; meta.py `day_offset_min`).
local NOW, NOW_US, SKEW, DAY_OFFSET = (function()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  local m = redis.call('HMGET', KEYS[5], 'clock_offset_ms', 'day_offset_min')
  local skew = tonumber(m[1] or '0')
  return s * 1000 + math.floor(us / 1000) + skew, s * 1000000 + us + skew * 1000, skew,
    tonumber(m[2] or '0')
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

local function days_in(y, m)
  if m == 12 then return 31 end
  return days_from_civil(y, m + 1, 1) - days_from_civil(y, m, 1)
end

local function local_civil(ms)
  return civil(math.floor((ms + OFFSET * MINUTE) / DAY))
end

-- The anchor in effect at NOW, from :meta (a pending one once its switch time has come), and
-- the periods held across a time-zone change ('hold_day', 'hold_month': '<pid>:<ms>').
local function load_anchor()
  local a = redis.call('HMGET', KEYS[5], 'anchor_day', 'anchor_from_ms', 'pending_anchor',
    'pending_from_ms', 'hold_day', 'hold_month')
  if a[3] and a[3] ~= '' and NOW >= tonumber(a[4]) then
    ANCHOR = { day = tonumber(a[3]), since = tonumber(a[4]) }
  else
    ANCHOR = { day = tonumber(a[1] or '1'), since = tonumber(a[2] or '0') }
  end
  HOLD = {}
  for i, kind in ipairs({ 'day', 'month' }) do
    local pid, till = string.match(a[4 + i] or '', '^([^:]+):(%d+)$')
    if pid then HOLD[kind] = { pid = pid, till = tonumber(till) } end
  end
end

-- The id in the calendar of OFFSET and ANCHOR, without holds.
local function calendar_id(period)
  local y, m, d = local_civil(NOW)
  if period == 'day' then return string.format('d%04d%02d%02d', y, m, d) end
  if period ~= 'month' then return error('unknown budget period ' .. period) end
  local c = math.min(ANCHOR.day, days_in(y, m))
  if d >= c then
    d = c
  else
    if m == 1 then y, m = y - 1, 12 else m = m - 1 end
    d = math.min(ANCHOR.day, days_in(y, m))
  end
  if days_from_civil(y, m, d) * DAY - OFFSET * MINUTE < ANCHOR.since then
    y, m, d = local_civil(ANCHOR.since)
  end
  return string.format('m%04d%02d%02d', y, m, d)
end

-- 'm20261101', 'd20261123' (local dates; see calendar.py) or '-'. A period held across a
-- time-zone change stays current until its end, and no later id of its kind is earlier.
local function period_id(period)
  if period == 'none' then return '-' end
  local held = HOLD[period]
  if held and NOW < held.till then return held.pid end
  local pid = calendar_id(period)
  if held and pid < held.pid then return held.pid end
  return pid
end

local function pid_date(pid)
  return tonumber(string.sub(pid, 2, 5)), tonumber(string.sub(pid, 6, 7)),
    tonumber(string.sub(pid, 8, 9))
end

-- First millisecond after a period id (month ids under ANCHOR.day) in the calendar of OFFSET.
local function calendar_end(pid)
  local y, m, d = pid_date(pid)
  if string.sub(pid, 1, 1) == 'd' then
    return (days_from_civil(y, m, d) + 1) * DAY - OFFSET * MINUTE
  end
  local c = math.min(ANCHOR.day, days_in(y, m))
  if d >= c then
    if m == 12 then y, m = y + 1, 1 else m = m + 1 end
    c = math.min(ANCHOR.day, days_in(y, m))
  end
  return days_from_civil(y, m, c) * DAY - OFFSET * MINUTE
end

-- When a period ends: a held one at the later of its end in the old zone and in this one.
local function period_end(pid)
  local held = HOLD[(string.sub(pid, 1, 1) == 'd') and 'day' or 'month']
  if held and held.pid == pid then return math.max(held.till, calendar_end(pid)) end
  return calendar_end(pid)
end

-- Surely after the period ends, whatever its offset and anchor (calendar.period_bound_ms).
local function period_bound(pid)
  local y, m, d = pid_date(pid)
  local days = (string.sub(pid, 1, 1) == 'd') and 2 or 32
  return (days_from_civil(y, m, d) + days) * DAY
end

-- An entry of :ledger_exp (a budget prefix or a q| field) may be dropped from `at` (ms) on;
-- a later expiry wins.
local function keep(name, at)
  redis.call('ZADD', KEYS[2], 'GT', fmt(at), name)
end

-- An end user's entry (store/ledger/common.py user_expiry): UIDLE after the call that touched
-- it can no longer be open, but never before its period ends (the user would be handed the
-- period's budget again) and never later than any period entry (its end + grace).
local function user_expiry(pid, hold)
  local idle = NOW + (hold or 0) + UIDLE
  if pid == '-' then return idle end
  local stop = period_end(pid)
  return math.min(stop + GRACE, math.max(stop, idle))
end

-- Period entries live until period end + grace, run entries for an idle TTL after their last
-- write, an end user's as user_expiry says, other entries without a period (lifetime budgets)
-- for ever. Without EXACT a period entry keeps the expiry it has, or gets a safe bound if it
-- has none. `hold` (ms, reserve only) is how long the call being reserved may stay open: a run
-- or user entry outlives it by the idle TTL, so it cannot expire under an open call whatever
-- the idle TTL is.
local function touch(prefix, hold)
  local pid = string.match(prefix, '[^|]*$')
  local level = string.match(prefix, '^[^|]*')
  if level == 'user' and (EXACT or pid == '-') then
    keep(prefix, user_expiry(pid, hold))
  elseif pid ~= '-' and EXACT then
    keep(prefix, period_end(pid) + GRACE)
  elseif pid ~= '-' then
    redis.call('ZADD', KEYS[2], 'NX', fmt(period_bound(pid) + GRACE), prefix)
  elseif level == 'run' then
    keep(prefix, NOW + (hold or 0) + IDLE)
  end
end

-- The limit a line is held to: the tenant's override (:meta overrides, by level) replaces the
-- limit of a call budget (USD, TOKENS); an action budget (RISK_POINTS) keeps the plan's
-- (store/ledger/common.py limit_in_force).
local CALL_UNITS = { USD = true, TOKENS = true }
local function line_limit(overrides, level, unit, limit)
  if CALL_UNITS[unit] and overrides[level] then return overrides[level] end
  return limit
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

-- A record for a reservation the store no longer has (its tombstone expired, or the store lost
-- it), from what the caller still holds: only the tombstone a settle of it leaves is written
-- from it. Whatever it reserved and the concurrency it held were settled at its expiry or lost
-- with the store, so a settle never frees them again (they may be other calls' now): a commit
-- charges its actual amount (an expiry charge may be recorded twice then: over, never under),
-- a release changes no sum (the README's *Resets, credits and late commits compose*).
local function missing_record(owner, estimate, first_prefix)
  local prefixes = {}
  for i = first_prefix, #ARGV do prefixes[#prefixes + 1] = ARGV[i] end
  return { state = 'MISSING', created = fmt(NOW), deadline = fmt(NOW), owner = owner,
           outcome = '0:1:-:-:0:-', amounts = estimate, actual = '-', held = '-',
           prefixes = prefixes }
end

-- Settle flags (commit.lua, release.lua): 'f' a release is final (a RELEASED or
-- EXPIRED_RELEASED reservation is not charged), 'k' only a record the store knows is settled
-- (nothing is written for an unknown id); '-' for neither.
local function has_flag(flags, flag)
  return string.find(flags, flag, 1, true) ~= nil
end

-- A call that held concurrency ended: one less in flight per field, never below 0 (a field
-- back at 0 is deleted).
local function free_held(held)
  for _, f in ipairs(split_list(held)) do
    if redis.call('HINCRBY', hkey(f), f, -1) <= 0 then redis.call('HDEL', hkey(f), f) end
  end
end

-- Settle a record: it is remembered (a tombstone) for TOMB ms so repeats are idempotent.
local function finish(id, r, state, actual)
  r.state, r.actual = state, actual
  save_record(id, r)
  redis.call('ZADD', KEYS[4], fmt(NOW + TOMB), id)
end

-- The first '<prefix>|<kind>' of `prefixes` whose value plus delta[prefix] (where lines
-- differ) or delta[unit] would leave [-SAFE, SAFE] (or that holds no integer), else nil.
local function out_of_range(prefixes, kind, delta)
  for _, p in ipairs(prefixes) do
    local d = delta[p] or delta[unit_of(p)] or 0
    local x = tonumber(redis.call('HGET', hkey(p), p .. '|' .. kind) or '0')
    if not x or x ~= math.floor(x) or math.abs(x + d) > SAFE then return p .. '|' .. kind end
  end
  return nil
end

-- Refuse the call, before it writes anything, if a sum would leave the safe range.
local function guard(prefixes, kind, delta)
  local field = out_of_range(prefixes, kind, delta)
  if field then
    error({ err = 'OUT_OF_RANGE ' .. TENANT .. ' ' .. field .. ' would leave the safe range' })
  end
end

-- The day's rollups this script adds (rollup.lua writes them, in one HMGET and one HSET at
-- the end): fields '<level>|<value>|<unit>|<period>|<kind>' of the day's hash, `sum` added to,
-- `top` raised to at least, `set` replaced. Run and user lines share one row per level, value
-- '*' (runs and end users are unbounded); the tenant-wide row is '-|-|-|-'.
-- `charged` maps each row charged to the local day its reservation was made on (`origin`,
-- set before a settle: rollup.lua takes the row's limit from that day when today has none).
local ROLL = { sum = {}, top = {}, set = {}, charged = {}, origin = false }
local ROLL_PERIODS = { d = 'day', m = 'month', ['-'] = 'none' }
local ROLL_STAR = { run = true, user = true }

function ROLL.row(prefix)
  local level, value, unit, pid = string.match(prefix, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if ROLL_STAR[level] then value = '*' end
  return level .. '|' .. value .. '|' .. unit .. '|' .. ROLL_PERIODS[string.sub(pid, 1, 1)]
end

function ROLL.add(field, x)
  ROLL.sum[field] = (ROLL.sum[field] or 0) + x
end

function ROLL.max(field, x)
  ROLL.top[field] = math.max(ROLL.top[field] or x, x)
end

-- The spent in period of a line after a write: a '*' row keeps the most of any value, others
-- the line's own.
function ROLL.value_peak(prefix, spent)
  local row = ROLL.row(prefix)
  if ROLL_STAR[string.match(prefix, '^[^|]*')] then
    ROLL.max(row .. '|vpeak', spent)
  else
    ROLL.set[row .. '|vpeak'] = fmt(spent)
  end
end

-- Whether period `pid` is the current one of its kind at NOW in the calendar of the day's
-- rollups (DAY_OFFSET, the tenant's anchor and holds), as a reserve now would name it.
local ROLL_CURRENT, ROLL_CALENDAR = {}, nil
function ROLL.current(pid)
  if pid == '-' then return true end
  if ROLL_CURRENT[pid] == nil then
    local offset, anchor, hold = OFFSET, ANCHOR, HOLD
    OFFSET = DAY_OFFSET
    if ROLL_CALENDAR then
      ANCHOR, HOLD = ROLL_CALENDAR[1], ROLL_CALENDAR[2]
    else
      load_anchor()
      ROLL_CALENDAR = { ANCHOR, HOLD }
    end
    ROLL_CURRENT[pid] = period_id((string.sub(pid, 1, 1) == 'd') and 'day' or 'month') == pid
    OFFSET, ANCHOR, HOLD = offset, anchor, hold
  end
  return ROLL_CURRENT[pid]
end

-- The settle that follows charges a reservation made at `created_ms` (its record's).
function ROLL.made(created_ms)
  ROLL.origin = math.floor((tonumber(created_ms) + DAY_OFFSET * MINUTE) / DAY)
end

-- `x` charged on the line of `prefix` (commit, expiry charge, late difference), spent now
-- `after`: the day's spent either way, its value_peak only when the period is the day's own
-- (a call reserved before its period ended and settled after leaves the new day's peak).
function ROLL.charge(prefix, x, after)
  local row = ROLL.row(prefix)
  ROLL.add(row .. '|spent', x)
  ROLL.charged[row] = ROLL.origin
  if ROLL.current(string.match(prefix, '[^|]*$')) then ROLL.value_peak(prefix, after) end
end

-- For each prefix: reserved -= free[unit] (clamped at 0), spent += charge[unit] (signed).
-- Every spent is checked before the first write.
local function settle_lines(prefixes, free, charge)
  if charge then guard(prefixes, 'spent', charge) end
  for _, p in ipairs(prefixes) do
    local unit = unit_of(p)
    if free then
      local left = redis.call('HINCRBY', hkey(p), p .. '|reserved', fmt(-(free[unit] or 0)))
      if left < 0 then redis.call('HSET', hkey(p), p .. '|reserved', '0') end
    end
    if charge then
      local x = charge[unit] or 0
      ROLL.charge(p, x, redis.call('HINCRBY', hkey(p), p .. '|spent', fmt(x)))
    end
    touch(p)
  end
end

-- Alert marks {prefix, basis points, the `spent` that reaches it} this charge (unit → amount
-- added to each prefix's spent, or prefix → amount where lines differ) crossed first in their
-- period: spent before < mark <= spent after. `q|alert|<prefix>|<basis points>` remembers a mark fired (HSETNX: once per period and
-- scope, however many instances settle) and expires with the period's entries. Returns the
-- crossed marks as flat triples (prefix, basis points, spent after).
local function cross_marks(marks, charge)
  local out = {}
  for _, m in ipairs(marks) do
    local p, bp, mark = m[1], m[2], m[3]
    local after = tonumber(redis.call('HGET', hkey(p), p .. '|spent') or '0')
    local before = after - (charge[p] or charge[unit_of(p)] or 0)
    local name = 'q|alert|' .. p .. '|' .. bp
    if before < mark and mark <= after and redis.call('HSETNX', KEYS[1], name, fmt(NOW)) == 1 then
      local pid = string.match(p, '[^|]*$')
      if pid ~= '-' then
        redis.call('ZADD', KEYS[2], 'NX', fmt(period_bound(pid) + GRACE), name)
      elseif string.match(p, '^[^|]*') == 'run' then
        keep(name, NOW + IDLE)
      end
      out[#out + 1] = p
      out[#out + 1] = bp
      out[#out + 1] = fmt(after)
    end
  end
  return out
end

-- RESET_SPENT generations (see base.py's invariants): 'q|gen|resets' counts the tenant's resets;
-- 'q|gen|reset|<prefix>' is the count at the line's last reset and 'q|gen|exp|<id>' the count
-- when reservation <id> was charged at expiry (absent: 0). Both live a tombstone's lifetime,
-- as long as a late commit can come.
local GEN = 'q|gen|'

local function generation(name)
  return tonumber(redis.call('HGET', hkey(GEN .. name), GEN .. name) or '0')
end

-- A commit after EXPIRED_CHARGED: each line gets actual - estimate, except that a line reset
-- since the expiry charge no longer holds that charge (only what exceeds the estimate is
-- added), and no line goes below zero (one dropped and written again since). Every line's sum
-- is computed and checked (guard) before the first write. Returns what was added per prefix,
-- and per unit actual - estimate or, where a line got more, the most added.
local function late_charge(id, prefixes, est, act)
  local since, added, by_unit = generation('exp|' .. id), {}, {}
  for unit, x in pairs(act) do by_unit[unit] = x end
  for unit, x in pairs(est) do by_unit[unit] = (by_unit[unit] or 0) - x end
  for _, p in ipairs(prefixes) do
    local unit = unit_of(p)
    local d = (act[unit] or 0) - (est[unit] or 0)
    if generation('reset|' .. p) > since then d = math.max(d, 0) end
    local spent = tonumber(redis.call('HGET', hkey(p), p .. '|spent') or '0')
    if spent then d = math.max(d, -spent) end
    added[p] = d
    by_unit[unit] = math.max(by_unit[unit] or 0, d)
  end
  guard(prefixes, 'spent', added)
  for _, p in ipairs(prefixes) do
    ROLL.charge(p, added[p], redis.call('HINCRBY', hkey(p), p .. '|spent', fmt(added[p])))
    touch(p)
  end
  return added, by_unit
end

-- Drop up to `limit` ledger entries whose expiry has passed (a budget prefix's three fields,
-- or one q| quota field); returns how many.
local function drop_expired(limit)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(NOW), 'LIMIT', 0, limit)
  for _, p in ipairs(gone) do
    if string.sub(p, 1, 2) == 'q|' then
      redis.call('HDEL', hkey(p), p)
    else
      redis.call('HDEL', hkey(p), p .. '|spent', p .. '|reserved', p .. '|credit')
    end
    redis.call('ZREM', KEYS[2], p)
  end
  return #gone
end

-- Index the tenant (KEYS[7]) at its earliest due time: the first deadline or tombstone expiry
-- of :resv_exp, or the first entry expiry of :ledger_exp, in Redis time (without SKEW); drop
-- it when it has neither. Every script that adds to either calls this last, so the index is
-- never later than the tenant's earliest due (the sweeper visits only tenants due by it).
local function reindex()
  local r = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  local l = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local due = r[2] and tonumber(r[2])
  if l[2] and (not due or tonumber(l[2]) < due) then due = tonumber(l[2]) end
  if due then
    redis.call('ZADD', KEYS[7], fmt(due - SKEW), TENANT)
  else
    redis.call('ZREM', KEYS[7], TENANT)
  end
end
