-- audit.lua: the tenant's audit trail (KEYS[6], a stream). Prepended after common.lua to every
-- per-tenant script.
--
-- Entry ids are '<ms>-<seq>' with ms = max(NOW, the last entry's ms): always explicit, so they
-- follow NOW (clock offset included) and still increase when the clock goes back. Each XADD
-- trims entries older than NOW - RETAIN exactly (MINID =, not ~), so both stores keep the same
-- entries. Fields are strings; amounts go through fmt(). What each kind records:
--   reserve  decision ALLOW | ALLOW_WITH_CAPS | DENY, reservation, path, amounts, [run],
--            [action] (what it was reserved for: an action's name, `mcp:<server>/<tool>`),
--            [rule] (the degrade rule of an ALLOW_WITH_CAPS), [reason budget | quota |
--            tenant_<status>, scope '<level>|<value>' or the quota, for a DENY or a shadow
--            call's would=DENY], [would] (shadow: what enforcement would have decided),
--            [agg] (a denial: '<minute>|<reason>|<scope>[|<group>]', see audit_denial)
--   commit   reservation, from (the state before), state, actual, charged
--   release  reservation, state
--   expire   reservation, state EXPIRED_CHARGED | EXPIRED_RELEASED, amounts
--   admin    actor, reason, action create | update | status | adjust | reset, changes
--   reject   actor, reason (a call refused at identification, e.g. tenant_mismatch)

local AUDIT_LAST = nil

local function audit(kind, fields)
  if not AUDIT_LAST then
    local last = redis.call('XREVRANGE', KEYS[6], '+', '-', 'COUNT', 1)
    AUDIT_LAST = last[1] and tonumber(string.match(last[1][1], '^(%d+)')) or 0
  end
  AUDIT_LAST = math.max(NOW, AUDIT_LAST)
  local args = { 'XADD', KEYS[6], 'MINID', '=', fmt(math.max(0, NOW - RETAIN)),
    fmt(AUDIT_LAST) .. '-*',
    'kind', kind }
  for _, x in ipairs(fields) do args[#args + 1] = x end
  return redis.call(unpack(args))
end

-- Identical denials (reason, scope and group) within one minute of NOW make one entry: the
-- first appends it, the rest count in the ledger field 'q|agg|<minute>|<reason>|<scope>', with
-- '|<group>' when the call names an action: the action, or for a tool call its price key
-- (`mcp:crm/delete_*`; `mcp:<server>/?` unpriced), so each price's denials are one entry and
-- made-up tool names cannot multiply them (the entry's action: the first denied), kept for the
-- retention (an end user's in :users, see hkey); audit() reads it back as the entry's `count`.
local function audit_denial(reason, scope, fields, group)
  local minute = math.floor(NOW / MINUTE)
  local key = fmt(minute) .. '|' .. reason .. '|' .. scope
  if group ~= '' then key = key .. '|' .. group end
  if redis.call('HINCRBY', hkey('q|agg|' .. key), 'q|agg|' .. key, 1) > 1 then return end
  keep('q|agg|' .. key, (minute + 1) * MINUTE + RETAIN)
  fields[#fields + 1] = 'agg'
  fields[#fields + 1] = key
  audit('reserve', fields)
end
