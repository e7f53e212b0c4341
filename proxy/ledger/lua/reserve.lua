-- reserve.lua: check tenant status, the quotas and every line; reserve the chosen candidate on
-- all lines and count the call against every quota, or do nothing. Idempotent by reservation
-- id. Loaded as common.lua + candidates.lua + quotas.lua + this file.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta
-- ARGV: 1 run_idle_ms, 2 period_grace_ms, 3 tombstone_ms (common.lua),
--       4 reservation id, 5 owner, 6 cap_ms, 7 shadow ('1' | '0'), 8 run id ('' for none),
--       9 runs_per_day, 10 steps_per_run, 11 requests_per_minute, 12 tokens_per_minute
--       ('-' for none), 13 m = number of concurrency quotas, then m × (level, value, limit),
--       then n = number of lines, then n × (level, value, unit, period, limit), then three
--       ARGVs per candidate (see candidates.lua).
--
-- Returns: status, outcome, amounts, held, n, then n × (period id, remaining), then the
-- reserved field prefixes. outcome is
--   '<candidate>:<would_allow 1|0>:<denied_by>:<fitted>:<retry_after_ms>:<quota>'
-- with 0-based indices (candidate -1: nothing reserved), '-' for none, and '/' for the space
-- in 'concurrent_requests <level>'. held is the comma-separated concurrency fields the call
-- holds ('-' for none). remaining is after the reservation when one was made, before it
-- otherwise. Every number is returned as a decimal string.
--
-- Record (the value under the id in :resv), space-separated tokens:
--   STATE created_ms deadline_ms owner outcome amounts actual held prefix1 prefix2 ...
--   e.g. 'OPEN 1763891200000 1763893000000 web-1-9f2c 0:1:-:-:0:- USD=1250000,TOKENS=812 -
--         q|conc|tenant|acme tenant|acme|USD|m202611 run|r42|USD|-'
-- STATE is OPEN | COMMITTED | RELEASED | EXPIRED_CHARGED | EXPIRED_RELEASED; amounts is the
-- reserved estimate, actual what a commit charged ('-' until then); held as in the reply;
-- prefixes are '<level>|<value>|<unit>|<period id>' (they never contain spaces). Settled
-- records keep their :resv_exp score at the tombstone expiry, open ones at their deadline.

local id, owner, cap, shadow = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7] == '1'
local run = (ARGV[8] ~= '') and ARGV[8] or nil
local function limit_at(i)
  if ARGV[i] == '-' then return nil end
  return tonumber(ARGV[i])
end
local q = { runs_per_day = limit_at(9), steps_per_run = limit_at(10), rpm = limit_at(11),
            tpm = limit_at(12), conc = {} }
local m = tonumber(ARGV[13])
for i = 1, m do
  local b = 13 + (i - 1) * 3
  q.conc[i] = { level = ARGV[b + 1], value = ARGV[b + 2], limit = tonumber(ARGV[b + 3]) }
end
local at_n = 14 + 3 * m
local n = tonumber(ARGV[at_n])

drop_expired(8)

local lines = {}
for i = 1, n do
  local b = at_n + (i - 1) * 5
  local pid = period_id(ARGV[b + 4])
  local prefix = ARGV[b + 1] .. '|' .. ARGV[b + 2] .. '|' .. ARGV[b + 3] .. '|' .. pid
  local f = redis.call('HMGET', KEYS[1], prefix .. '|spent', prefix .. '|reserved',
    prefix .. '|credit')
  local remaining = tonumber(ARGV[b + 5]) + tonumber(f[3] or '0') - tonumber(f[1] or '0')
    - tonumber(f[2] or '0')
  lines[i] = { unit = ARGV[b + 3], pid = pid, prefix = prefix, remaining = remaining }
end

local status = redis.call('HGET', KEYS[5], 'status') or 'active'

local function reply(outcome, amounts, held, prefixes)
  local out = { status, outcome, amounts, held, fmt(n) }
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
  return reply(r.outcome, r.amounts, r.held, r.prefixes)
end
if status ~= 'active' then return reply('-1:0:-:-:0:-', '-', '-', {}) end

local cands = {}
for c = at_n + 1 + 5 * n, #ARGV, 3 do
  cands[#cands + 1] = parse_candidate(ARGV[c], ARGV[c + 1], ARGV[c + 2])
end
local index, amounts, fitted, denied = choose(cands, lines)

local function dash(x)
  return x and fmt(x) or '-'
end
local function outcome(candidate, would_allow, fit, gate)
  local quota = gate.quota and (string.gsub(gate.quota, ' ', '/')) or '-'
  return fmt(candidate) .. ':' .. (would_allow and '1' or '0') .. ':' .. dash(denied) .. ':'
    .. dash(fit) .. ':' .. fmt(gate.retry or 0) .. ':' .. quota
end

-- Quotas first, then budgets, then the token rate of the chosen candidate. Enforcement stops at
-- the first that denies; shadow reports it and goes on (see ReserveRequest.shadow).
local gate = check_quotas(q, run)
if (gate.quota or not index) and not shadow then
  return reply(outcome(-1, false, nil, gate), '-', '-', {})
end
if q.tpm then
  rate(gate, 'tokens_per_minute', q.tpm, (index and amounts or cands[1].amounts).TOKENS)
  if gate.quota and not shadow then return reply(outcome(-1, false, nil, gate), '-', '-', {}) end
end
count_quotas(gate)

local text
if shadow then
  amounts, text = cands[1].amounts, cands[1].text
elseif cands[index + 1].fit then
  text = encode_amounts(amounts)
else
  text = cands[index + 1].text
end
local prefixes = {}
for i, l in ipairs(lines) do
  local amount = amounts[l.unit] or 0
  redis.call('HINCRBY', KEYS[1], l.prefix .. '|reserved', fmt(amount))
  touch(l.prefix)
  l.remaining = l.remaining - amount
  prefixes[i] = l.prefix
end
local decided = outcome(index or 0, index ~= nil and not gate.quota, fitted, gate)
local held = join_list(gate.held)
save_record(id, { state = 'OPEN', created = fmt(NOW), deadline = fmt(NOW + cap), owner = owner,
  outcome = decided, amounts = text, actual = '-', held = held, prefixes = prefixes })
redis.call('ZADD', KEYS[4], fmt(NOW + cap), id)
return reply(decided, text, held, prefixes)
