-- reserve.lua: check tenant status and every line; reserve the first candidate that fits all
-- lines, on all of them, or nothing. Idempotent by reservation id.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms (common.lua),
--       4 reservation id, 5 owner, 6 cap_ms, 7 shadow ('1' | '0'), 8 n = number of lines,
--       then n × (level, value, unit, period, limit), then one ARGV per candidate: its amounts
--       as 'USD=123,TOKENS=45' ('-' for none).
--
-- Returns: status, outcome, amounts, n, then n × (period id, remaining), then the reserved
-- field prefixes. outcome is '<candidate>:<would_allow 1|0>:<denied_by or ->' with 0-based
-- indices (candidate -1: nothing reserved). remaining is after the reservation when one was
-- made, before it otherwise. Every number is returned as a decimal string.
--
-- Record (the value under the id in :resv), space-separated tokens:
--   STATE created_ms deadline_ms owner outcome amounts actual prefix1 prefix2 ...
--   e.g. 'OPEN 1763891200000 1763893000000 web-1-9f2c 0:1:- USD=1250000,TOKENS=812 -
--         tenant|acme|USD|m202611 run|r42|USD|-'
-- STATE is OPEN | COMMITTED | RELEASED | EXPIRED_CHARGED | EXPIRED_RELEASED; amounts is the
-- reserved estimate, actual what a commit charged ('-' until then); prefixes are
-- '<level>|<value>|<unit>|<period id>' (they never contain spaces). Settled records keep
-- their :resv_exp score at the tombstone expiry, open ones at their deadline.

local id, owner, cap, shadow = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
local n = tonumber(ARGV[8])
local first_candidate = 9 + 5 * n

drop_expired(8)

local lines = {}
for i = 1, n do
  local b = 8 + (i - 1) * 5
  local pid = period_id(ARGV[b + 4])
  local prefix = ARGV[b + 1] .. '|' .. ARGV[b + 2] .. '|' .. ARGV[b + 3] .. '|' .. pid
  local f = redis.call('HMGET', KEYS[1], prefix .. '|spent', prefix .. '|reserved',
    prefix .. '|credit')
  local remaining = tonumber(ARGV[b + 5]) + tonumber(f[3] or '0') - tonumber(f[1] or '0')
    - tonumber(f[2] or '0')
  lines[i] = { unit = ARGV[b + 3], pid = pid, prefix = prefix, remaining = remaining }
end

local status = redis.call('HGET', KEYS[5], 'status') or 'active'

local function reply(outcome, amounts, prefixes)
  local out = { status, outcome, amounts, fmt(n) }
  for _, l in ipairs(lines) do
    out[#out + 1] = l.pid
    out[#out + 1] = fmt(l.remaining)
  end
  for _, p in ipairs(prefixes) do out[#out + 1] = p end
  return out
end

local existing = redis.call('HGET', KEYS[3], id)
if existing then
  local r = parse_record(existing)
  return reply(r.outcome, r.amounts, r.prefixes)
end
if status ~= 'active' then return reply('-1:0:-', '-', {}) end

local function misfit(amounts)
  for i, l in ipairs(lines) do
    if (amounts[l.unit] or 0) > l.remaining then return i end
  end
  return nil
end

local chosen, denied
for c = first_candidate, #ARGV do
  local miss = misfit(parse_amounts(ARGV[c]))
  if c == first_candidate and miss then denied = fmt(miss - 1) end
  if not miss then
    chosen = c
    break
  end
end
local would_allow = chosen and '1' or '0'
if not chosen and shadow then chosen = first_candidate end
if not chosen then return reply('-1:0:' .. (denied or '-'), '-', {}) end

local amounts = parse_amounts(ARGV[chosen])
local prefixes = {}
for i, l in ipairs(lines) do
  local amount = amounts[l.unit] or 0
  redis.call('HINCRBY', KEYS[1], l.prefix .. '|reserved', fmt(amount))
  touch(l.prefix)
  l.remaining = l.remaining - amount
  prefixes[i] = l.prefix
end
local outcome = fmt(chosen - first_candidate) .. ':' .. would_allow .. ':'
  .. (denied or '-')
save_record(id, { state = 'OPEN', created = fmt(NOW), deadline = fmt(NOW + cap), owner = owner,
  outcome = outcome, amounts = ARGV[chosen], actual = '-', prefixes = prefixes })
redis.call('ZADD', KEYS[4], fmt(NOW + cap), id)
return reply(outcome, ARGV[chosen], prefixes)
