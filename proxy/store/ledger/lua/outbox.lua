-- outbox.lua: the tenant's usage-event outbox, the stream KEYS[9] (`:outbox`, declared like
-- every key a script touches). Prepended after audit.lua to commit, release and sweep.
--
-- An entry is added in the same script as the settle it reports, and only by a settle that
-- changed the ledger (a repeat adds nothing): a crash can lose neither. The sender
-- (gateway/usage_sender.py) reads entries, delivers them and deletes them once every sink took
-- them (store/ledger/outbox_redis.py). Fields (strings):
--   kind settle  state (COMMITTED | RELEASED: a commit may have charged nothing), event (the
--                event's JSON without its cost, written by the proxy: it knows the
--                scope, models, tokens and request id), reservation, id (the event's id:
--                event_id), charged (what this settle added to spent, amounts form; '-' for a
--                release)
--   kind expire  reservation, charged (the estimate charged at expiry; '-' when released),
--                fields (the record's field prefixes, ',' separated), owner
--
-- The stream holds at most `bound` entries (policy events.max_pending): at the bound the entry
-- is not added and the drop is counted in the tenant's :meta field `outbox_dropped`. The settle
-- itself goes on: the ledger never fails because its events are not being delivered.

local OUTBOX = KEYS[9]

-- The event's id: the reservation id for its settle, but a settle after a release (commit.lua:
-- RELEASED is then charged) or of a record the store no longer has (MISSING: its tombstone
-- expired, a second charge) is a distinct charge, with an id of its own. An id dedupes the
-- redeliveries of one entry, never two charges.
local function event_id(id, state)
  if state == 'RELEASED' then return id .. '.after-release' end
  if state == 'MISSING' then return id .. '.missing.' .. fmt(NOW) end
  return id
end

local function outbox(fields, bound)
  if redis.call('XLEN', OUTBOX) >= bound then
    redis.call('HINCRBY', KEYS[5], 'outbox_dropped', 1)
    return
  end
  local args = { 'XADD', OUTBOX, '*' }
  for _, x in ipairs(fields) do args[#args + 1] = x end
  redis.call(unpack(args))
end
