-- lines.lua: where budget lines stand in their current period, read only (what a caller sees
-- at GET /v1/cycles/balances). Loaded as common.lua + this file.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due, 8 users (common.lua)
-- ARGV: 1-4 (common.lua), 5 utc offset in minutes, then n × (level, value, unit, period, limit)
--
-- Returns: n × (period id, limit, spent, reserved, credit): the period current at NOW in the
-- tenant's calendar (the one a reserve would use), and the limit a reserve would hold the line
-- to (common.lua line_limit).

OFFSET = tonumber(ARGV[5])
local overrides = parse_amounts(redis.call('HGET', KEYS[5], 'overrides') or '-')
load_anchor()

local out = {}
for b = 6, #ARGV, 5 do
  local level, unit = ARGV[b], ARGV[b + 2]
  local pid = period_id(ARGV[b + 3])
  local prefix = level .. '|' .. ARGV[b + 1] .. '|' .. unit .. '|' .. pid
  local f = redis.call('HMGET', hkey(prefix), prefix .. '|spent', prefix .. '|reserved',
    prefix .. '|credit')
  for _, x in ipairs({ pid, fmt(line_limit(overrides, level, unit, tonumber(ARGV[b + 4]))),
                       f[1] or '0', f[2] or '0', f[3] or '0' }) do
    out[#out + 1] = x
  end
end
return out
