-- tenant.lua: create a tenant, change its record or its status, in one script with its audit
-- entry. Loaded as common.lua + audit.lua + this file.
--
-- KEYS: 1 ledger, 2 ledger_exp, 3 resv, 4 resv_exp, 5 meta, 6 audit, 7 due, 8 users (common.lua)
-- ARGV: 1-4 (common.lua), 5 op ('create' | 'update' | 'status' | 'note'), 6 actor, 7 reason,
--       8 utc offset in minutes (of the tenant's time zone before this change, for an anchor or
--       time-zone change), then
--       create: 9.. field, value pairs (status, plan, mode, anchor_day, timezone, overrides)
--       update: 9 anchor day ('-': unchanged), 10.. field, value pairs to set
--       status: 9 the new status
--
-- Returns: outcome ('ok' | 'same' (nothing changed) | 'exists' | 'not_found' | 'closed'), then
-- the :meta hash as field, value pairs. Every change bumps `version` and appends an admin
-- entry whose `changes` lists 'field=old->new' (create: 'field=value') separated by spaces.
--
-- An anchor change is stored as pending_anchor, in effect from pending_from_ms = the end of the
-- period current under the anchor in effect now (a pending anchor whose time has come is made
-- the anchor first); setting the anchor in effect again drops a pending one. A time-zone change
-- writes hold_day and hold_month (the periods current now, until they end in the old zone).

local op, actor, reason = ARGV[5], ARGV[6], ARGV[7]
OFFSET = tonumber(ARGV[8])

local function meta_reply(outcome)
  local out = { outcome }
  for _, x in ipairs(redis.call('HGETALL', KEYS[5])) do out[#out + 1] = x end
  return out
end

local function changed(changes)
  redis.call('HINCRBY', KEYS[5], 'version', 1)
  audit('admin', { 'actor', actor, 'reason', reason, 'action', op,
    'changes', table.concat(changes, ' ') })
  return meta_reply('ok')
end

local exists = redis.call('HEXISTS', KEYS[5], 'created_ms') == 1
if op == 'note' then
  -- A call refused before it reached the ledger (identification): recorded, nothing changed.
  if not exists then return { 'not_found' } end
  audit('reject', { 'actor', actor, 'reason', reason })
  return { 'ok' }
end
if op == 'create' then
  if exists then return { 'exists' } end
  local changes = {}
  for i = 9, #ARGV, 2 do
    redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
    changes[#changes + 1] = ARGV[i] .. '=' .. ARGV[i + 1]
  end
  redis.call('HSET', KEYS[5], 'created_ms', fmt(NOW), 'anchor_from_ms', '0', 'version', '0',
    'pending_anchor', '', 'pending_from_ms', '0')
  return changed(changes)
end
if not exists then return { 'not_found' } end
local status = redis.call('HGET', KEYS[5], 'status')

if op == 'status' then
  local to = ARGV[9]
  if status == to then return meta_reply('same') end
  if status == 'closed' then return { 'closed' } end
  redis.call('HSET', KEYS[5], 'status', to)
  return changed({ 'status=' .. status .. '->' .. to })
end

if status == 'closed' then return { 'closed' } end
-- A time-zone change holds the day and month current now (OFFSET: the old zone) until they
-- end in it (calendar.py): it never shortens or restarts a period.
for i = 10, #ARGV, 2 do
  local zone = redis.call('HGET', KEYS[5], 'timezone') or 'UTC'
  if ARGV[i] == 'timezone' and zone ~= ARGV[i + 1] then
    load_anchor()
    for _, kind in ipairs({ 'day', 'month' }) do
      local pid = period_id(kind)
      redis.call('HSET', KEYS[5], 'hold_' .. kind, pid .. ':' .. fmt(period_end(pid)))
    end
  end
end
local changes = {}
for i = 10, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[5], ARGV[i]) or ''
  if old ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
    changes[#changes + 1] = ARGV[i] .. '=' .. old .. '->' .. ARGV[i + 1]
  end
end
if ARGV[9] ~= '-' then
  local m = redis.call('HMGET', KEYS[5], 'anchor_day', 'pending_anchor', 'pending_from_ms')
  if m[2] ~= '' and NOW >= tonumber(m[3]) then
    redis.call('HSET', KEYS[5], 'anchor_day', m[2], 'anchor_from_ms', m[3])
    m[1], m[2] = m[2], ''
  end
  local configured = (m[2] ~= '') and m[2] or m[1]
  if configured ~= ARGV[9] then
    if ARGV[9] == m[1] then
      redis.call('HSET', KEYS[5], 'pending_anchor', '', 'pending_from_ms', '0')
    else
      load_anchor()
      local switch = period_end(period_id('month'))
      redis.call('HSET', KEYS[5], 'pending_anchor', ARGV[9], 'pending_from_ms', fmt(switch))
    end
    changes[#changes + 1] = 'anchor_day=' .. configured .. '->' .. ARGV[9]
  end
end
if #changes == 0 then return meta_reply('same') end
return changed(changes)
