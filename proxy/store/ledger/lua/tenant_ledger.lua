-- tenant_ledger.lua: an admin adjustment (credit) or RESET_SPENT on the tenant's current
-- period, with its audit entry. Loaded as common.lua + audit.lua + this file.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due, 8 users (common.lua)
-- ARGV: 1-4 (common.lua), 5 op ('adjust' | 'reset'), 6 actor, 7 reason, 8 utc offset in
--       minutes (of the tenant's time zone), then
--       adjust: 9 level, 10 value, 11 unit, 12 period, 13 signed amount added to credit
--       reset: 9 level ('-': the tenant's own levels, never its end users), 10 value ('-':
--       all); level 'user' needs one value (store/tenants: end users are reset one at a time)
--       and reads only that user's fields, never the others'; 11.. the units whose lines
--       a user reset zeroes (store/tenants/base.py reset_units: the built-in ones and the
--       policy's), as a user's fields can only be found by name
--
-- Returns: outcome ('ok' | 'not_found' | 'closed'), n, then n × (prefix, spent, reserved,
-- credit): the adjusted line, or every current line reset (its spent zeroed, never reserved).
-- Current lines: the periods containing NOW in the tenant's calendar, and lines without one.

local op, actor, reason = ARGV[5], ARGV[6], ARGV[7]
OFFSET, EXACT = tonumber(ARGV[8]), true

if redis.call('HEXISTS', KEYS[5], 'created_ms') == 0 then return { 'not_found' } end
if redis.call('HGET', KEYS[5], 'status') == 'closed' then return { 'closed' } end
load_anchor()

local function rows(prefixes)
  local out = { 'ok', fmt(#prefixes) }
  for _, p in ipairs(prefixes) do
    local f = redis.call('HMGET', hkey(p), p .. '|spent', p .. '|reserved', p .. '|credit')
    for _, x in ipairs({ p, f[1] or '0', f[2] or '0', f[3] or '0' }) do out[#out + 1] = x end
  end
  return out
end

local function admin(changes)
  audit('admin', { 'actor', actor, 'reason', reason, 'action', op, 'changes', changes })
end

if op == 'adjust' then
  local amount = tonumber(ARGV[13])
  local prefix = ARGV[9] .. '|' .. ARGV[10] .. '|' .. ARGV[11] .. '|' .. period_id(ARGV[12])
  guard({ prefix }, 'credit', { [ARGV[11]] = amount })
  redis.call('HINCRBY', hkey(prefix), prefix .. '|credit', fmt(amount))
  touch(prefix)
  reindex()
  admin('credit ' .. prefix .. ' ' .. fmt(amount))
  return rows({ prefix })
end

local current = { ['-'] = true, [period_id('month')] = true, [period_id('day')] = true }
-- The current `spent` fields the reset may zero, flat (name, value): one user's own (each unit,
-- each current period), or the tenant's own lines.
local function candidates()
  if ARGV[9] ~= 'user' then return redis.call('HGETALL', KEYS[1]) end
  local out = {}
  for i = 11, #ARGV do
    local unit = ARGV[i]
    for pid in pairs(current) do
      local name = 'user|' .. ARGV[10] .. '|' .. unit .. '|' .. pid .. '|spent'
      local x = redis.call('HGET', KEYS[8], name)
      if x then
        out[#out + 1] = name
        out[#out + 1] = x
      end
    end
  end
  return out
end

local entries = candidates()
local prefixes, zeroed = {}, {}
for i = 1, #entries, 2 do
  local level, value, pid = string.match(entries[i], '^([^|]*)|([^|]*)|[^|]*|([^|]*)|spent$')
  if level and level ~= 'q' and current[pid] and (ARGV[9] == '-' or ARGV[9] == level)
      and (ARGV[10] == '-' or ARGV[10] == value) then
    local prefix = string.sub(entries[i], 1, -7)
    prefixes[#prefixes + 1] = prefix
    if tonumber(entries[i + 1]) ~= 0 then
      zeroed[#zeroed + 1] = prefix .. '=' .. fmt(tonumber(entries[i + 1]))
      redis.call('HSET', hkey(entries[i]), entries[i], '0')
    end
  end
end
if #prefixes > 0 then
  -- A new generation: expiry charges made before it are no longer on these lines.
  local gen = redis.call('HINCRBY', KEYS[1], GEN .. 'resets', 1)
  for _, p in ipairs(prefixes) do
    redis.call('HSET', hkey(GEN .. 'reset|' .. p), GEN .. 'reset|' .. p, fmt(gen))
    keep(GEN .. 'reset|' .. p, NOW + TOMB)
  end
  reindex()
end
table.sort(prefixes)
table.sort(zeroed)
admin((#zeroed > 0) and table.concat(zeroed, ' ') or '-')
return rows(prefixes)
