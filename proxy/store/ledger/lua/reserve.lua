-- reserve.lua: check tenant status, the quotas and every line; reserve the chosen candidate on
-- all lines and count the call against every quota, or do nothing. Idempotent by reservation
-- id. Loaded as common.lua + audit.lua + rollup.lua + candidates.lua + quotas.lua + this file.
-- Writes the day's rollups (rollup.lua): calls, estimates and peaks on every line it reserves
-- on, denials on the denying line (a quota's and the tenant status's on the tenant-wide row),
-- degrade rules, and what a shadow call would have denied; and records the utc offset
-- (:meta day_offset_min) for the settling scripts' day.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due, 8 users (common.lua)
-- ARGV: 1 idle TTLs, 2 period_grace_ms, 3 tombstone_ms, 4 retentions (common.lua),
--       5 reservation id, 6 owner, 7 how long it stays open (ms: the cap, or an action's
--       shorter ttl), 8 shadow ('1' | '0'; 'r': a
--       shadow replay, ReserveRequest.replay), 9 run id ('' for none),
--       10 tenant version the request was built from ('-': not checked), 11 utc offset in
--       minutes, 12 scope path (for the audit), 13 keep the scope path with the record ('1',
--       an action's reservation, see below | '0'), followed by the action reserved for, if
--       any (for the audit: '0mcp:crm/send_email'), then ' ' and the key its denials are
--       grouped by when not the action ('0mcp:crm/delete_x mcp:crm/delete_*'), 14 runs_per_day, 15 steps_per_run,
--       16 requests_per_minute, 17 tokens_per_minute ('-' for none), 18 m = number of
--       concurrency quotas, then m × (level, value, limit), then r = number of level request
--       rates, then r × (level, value, limit), then n = number of lines, then
--       n × (level, value, unit, period, limit), then four ARGVs per candidate (see
--       candidates.lua).
--
-- Returns: status, outcome, amounts, held, n, then n × (period id, remaining), then first_deny,
-- then settled, then the reserved field prefixes. first_deny is the denying line's field prefix
-- when an enforced denial by a budget line is that line's first in its period
-- ('q|alert|<prefix>|deny', HSETNX, expiring with the period), else '-'. settled is '-' unless
-- this is a repeat of a reservation whose record is no longer OPEN: then its state (nothing is
-- held for it now, whatever its first outcome, which is returned with its amounts and
-- prefixes for a settle by id). outcome is 'stale' when the version differs (nothing was written),
-- else
--   '<candidate>:<would_allow 1|0>:<denied_by>:<fitted>:<retry_after_ms>:<quota>'
-- with 0-based indices (candidate -1: nothing reserved), '-' for none, and '/' for the space
-- in 'concurrent_requests <level>'. held is the comma-separated concurrency fields the call
-- holds ('-' for none). remaining is after the reservation when one was made, before it
-- otherwise. Every number is returned as a decimal string. A call budget's limit is replaced
-- by the tenant's override for the line's level (:meta overrides, see common.lua line_limit),
-- the store's record being authoritative. Every decision is audited (audit.lua), except a repeat and a stale request.
--
-- Record (the value under the id in :resv), space-separated tokens:
--   STATE created_ms deadline_ms owner outcome amounts actual held prefix1 prefix2 ...
--   e.g. 'OPEN 1763891200000 1763893000000 web-1-9f2c 0:1:-:-:0:- USD=1250000,TOKENS=812 -
--         q|conc|tenant|acme tenant|acme|USD|m20261101 run|r42|USD|-'
-- STATE is OPEN | COMMITTED | RELEASED | EXPIRED_CHARGED | EXPIRED_RELEASED; amounts is the
-- reserved estimate, actual what a commit charged ('-' until then); held as in the reply;
-- prefixes are '<level>|<value>|<unit>|<period id>' (they never contain spaces). Settled
-- records keep their :resv_exp score at the tombstone expiry, open ones at their deadline.
-- With ARGV[13] '1' the scope path is kept beside the record, under '<id>|scope' in :resv (no
-- id contains '|', and :resv is only ever read by id), and goes with it (sweep.lua): whoever
-- settles the reservation later is checked against it. Older releases never read that field.

local id, owner, cap, shadow = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8] ~= '0'
local replay = ARGV[8] == 'r'
local run = (ARGV[9] ~= '') and ARGV[9] or nil
local version, path = ARGV[10], ARGV[12]
local keep_scope, action = string.sub(ARGV[13], 1, 1) == '1', string.sub(ARGV[13], 2)
local group = action
local space = string.find(action, ' ', 1, true)
if space then action, group = string.sub(action, 1, space - 1), string.sub(action, space + 1) end
OFFSET, EXACT = tonumber(ARGV[11]), true
local function limit_at(i)
  if ARGV[i] == '-' then return nil end
  return tonumber(ARGV[i])
end
local q = { runs_per_day = limit_at(14), steps_per_run = limit_at(15), rpm = limit_at(16),
            tpm = limit_at(17), conc = {}, rates = {} }
-- A count at ARGV[at], then that many (level, value, limit): the next free index after them.
local function scoped(at, into)
  for i = 1, tonumber(ARGV[at]) do
    local b = at + (i - 1) * 3
    into[i] = { level = ARGV[b + 1], value = ARGV[b + 2], limit = tonumber(ARGV[b + 3]) }
  end
  return at + 1 + 3 * #into
end
local at_n = scoped(scoped(18, q.conc), q.rates)
local n = tonumber(ARGV[at_n])
local meta = redis.call('HMGET', KEYS[5], 'status', 'version', 'overrides')
local status = meta[1] or 'active'
local overrides = parse_amounts(meta[3] or '-')
load_anchor()

drop_expired(8)

local lines = {}
for i = 1, n do
  local b = at_n + (i - 1) * 5
  local pid = period_id(ARGV[b + 4])
  local prefix = ARGV[b + 1] .. '|' .. ARGV[b + 2] .. '|' .. ARGV[b + 3] .. '|' .. pid
  local f = redis.call('HMGET', hkey(prefix), prefix .. '|spent', prefix .. '|reserved',
    prefix .. '|credit')
  local limit = line_limit(overrides, ARGV[b + 1], ARGV[b + 3], tonumber(ARGV[b + 5]))
  local remaining = limit + tonumber(f[3] or '0') - tonumber(f[1] or '0') - tonumber(f[2] or '0')
  lines[i] = { unit = ARGV[b + 3], pid = pid, prefix = prefix, remaining = remaining,
               scope = ARGV[b + 1] .. '|' .. ARGV[b + 2], limit = limit,
               spent = tonumber(f[1] or '0'), row = ROLL.row(prefix) }
end

local function reply(outcome, amounts, held, prefixes, first_deny, settled)
  roll_flush()
  reindex()
  local out = { status, outcome, amounts, held, fmt(n) }
  for _, l in ipairs(lines) do
    out[#out + 1] = l.pid
    out[#out + 1] = fmt(l.remaining)
  end
  out[#out + 1] = first_deny or '-'
  out[#out + 1] = settled or '-'
  for _, p in ipairs(prefixes) do out[#out + 1] = p end
  return out
end

local existing = redis.call('HGET', KEYS[3], id)
if existing then
  local r = parse_record(existing)
  local settled = (r.state ~= 'OPEN') and r.state or nil
  return reply(r.outcome, r.amounts, r.held, r.prefixes, nil, settled)
end
if version ~= '-' and version ~= (meta[2] or '0') then return reply('stale', '-', '-', {}) end
-- Settling scripts place their writes in the tenant's day by the offset recorded here.
if OFFSET ~= DAY_OFFSET then
  redis.call('HSET', KEYS[5], 'day_offset_min', fmt(OFFSET))
  DAY_OFFSET = OFFSET
end

local cands = {}
for c = at_n + 1 + 5 * n, #ARGV, 4 do
  cands[#cands + 1] = parse_candidate(ARGV[c], ARGV[c + 1], ARGV[c + 2], ARGV[c + 3])
end
local asked = encode_amounts(cands[1].amounts)

local function base_fields(decision, amounts_text)
  local f = { 'decision', decision, 'reservation', id, 'path', path, 'amounts', amounts_text }
  if run then
    f[#f + 1] = 'run'
    f[#f + 1] = run
  end
  if action ~= '' then
    f[#f + 1] = 'action'
    f[#f + 1] = action
  end
  return f
end

if status ~= 'active' then
  local f = base_fields('DENY', asked)
  for _, x in ipairs({ 'reason', 'tenant_' .. status, 'scope', '-' }) do f[#f + 1] = x end
  audit_denial('tenant_' .. status, '-', f, group)
  ROLL.add('-|-|-|-|deny|tenant_' .. status, 1)
  return reply('-1:0:-:-:0:-', '-', '-', {})
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

-- Why enforcement denies (or would): 'quota' and the quota, else 'budget' and the line.
local function why(gate)
  if gate.quota then return 'quota', gate.quota end
  return 'budget', denied and lines[denied + 1].scope or '-'
end

-- The first denial by a budget line in its period (commit.lua's keep_alert for the expiry); an
-- end user's line raises no alert (there may be millions of them).
local function first_deny(gate)
  if gate.quota or not denied then return nil end
  local prefix = lines[denied + 1].prefix
  if string.match(prefix, '^[^|]*') == 'user' then return nil end
  local name = 'q|alert|' .. prefix .. '|deny'
  if redis.call('HSETNX', KEYS[1], name, fmt(NOW)) == 0 then return nil end
  if lines[denied + 1].pid ~= '-' then
    redis.call('ZADD', KEYS[2], 'NX', fmt(period_bound(lines[denied + 1].pid) + GRACE), name)
  elseif string.match(prefix, '^[^|]*') == 'run' then
    keep(name, NOW + IDLE)
  end
  return prefix
end

-- A denial in the day's rollups: a quota's on the tenant-wide row, a line's on that line (or,
-- for a call shadow admits, as a denial it would have made).
local function roll_denial(gate, kind)
  if gate.quota then
    ROLL.add('-|-|-|-|' .. kind .. ((kind == 'deny') and ('|quota:' .. gate.quota) or ''), 1)
  elseif denied then
    local l = lines[denied + 1]
    ROLL.add(l.row .. '|' .. kind .. ((kind == 'deny') and '|budget' or ''), 1)
    ROLL.set[l.row .. '|limit'] = fmt(l.limit)
  end
end

local function deny(gate)
  local reason, scope = why(gate)
  roll_denial(gate, 'deny')
  local f = base_fields('DENY', asked)
  for _, x in ipairs({ 'reason', reason, 'scope', scope }) do f[#f + 1] = x end
  audit_denial(reason, scope, f, group)
  return reply(outcome(-1, false, nil, gate), '-', '-', {}, first_deny(gate))
end

-- Quotas first, then budgets, then the token rate of the chosen candidate. Enforcement stops at
-- the first that denies; shadow reports it and goes on (see ReserveRequest.shadow).
local gate = check_quotas(q, run)
if (gate.quota or not index) and not shadow then return deny(gate) end
if q.tpm then
  rate(gate, 'tokens_per_minute', 'q|tpm|tat', q.tpm,
    (index and amounts or cands[1].amounts).TOKENS)
  if gate.quota and not shadow then return deny(gate) end
end
local text
if shadow then
  amounts, text = cands[1].amounts, cands[1].text
elseif cands[index + 1].fit then
  text = encode_amounts(amounts)
else
  text = cands[index + 1].text
end
local prefixes = {}
for i, l in ipairs(lines) do prefixes[i] = l.prefix end
guard(prefixes, 'reserved', amounts)
count_quotas(gate, cap)
local rule = (not shadow and index and index > 0) and cands[index + 1].name or nil
for i, l in ipairs(lines) do
  local amount = amounts[l.unit] or 0
  local held_now = redis.call('HINCRBY', hkey(l.prefix), l.prefix .. '|reserved', fmt(amount))
  touch(l.prefix, cap)
  l.remaining = l.remaining - amount
  ROLL.add(l.row .. '|calls', 1)
  ROLL.add(l.row .. '|rsum', amount)
  ROLL.max(l.row .. '|peak', held_now)
  ROLL.set[l.row .. '|limit'] = fmt(l.limit)
  ROLL.value_peak(l.prefix, l.spent)
  if rule then ROLL.add(l.row .. '|degr|' .. rule, 1) end
end
ROLL.add('-|-|-|-|calls', 1)
local would_allow = index ~= nil and not gate.quota
if shadow and not replay and not would_allow then roll_denial(gate, 'shadow') end
local decided = outcome(index or 0, would_allow, fitted, gate)
local held = join_list(gate.held)
local verdict = (index and index > 0) and 'ALLOW_WITH_CAPS' or 'ALLOW'
local f = base_fields(shadow and 'ALLOW' or verdict, encode_amounts(amounts))
if index and index > 0 then
  f[#f + 1] = 'rule'
  f[#f + 1] = cands[index + 1].name
end
if shadow and not replay then
  f[#f + 1] = 'would'
  f[#f + 1] = would_allow and verdict or 'DENY'
  if not would_allow then
    local reason, scope = why(gate)
    for _, x in ipairs({ 'reason', reason, 'scope', scope }) do f[#f + 1] = x end
  end
end
audit('reserve', f)
save_record(id, { state = 'OPEN', created = fmt(NOW), deadline = fmt(NOW + cap), owner = owner,
  outcome = decided, amounts = text, actual = '-', held = held, prefixes = prefixes })
if keep_scope then redis.call('HSET', KEYS[3], id .. '|scope', path) end
redis.call('ZADD', KEYS[4], fmt(NOW + cap), id)
return reply(decided, text, held, prefixes)
