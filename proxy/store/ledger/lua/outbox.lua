-- outbox.lua: the tenant's usage-event outbox, a stream beside KEYS[1] (`:outbox`, same hash
-- tag, so the same cluster slot). Prepended after audit.lua to commit, release and sweep.
--
-- An entry is added in the same script as the settle it reports, and only by a settle that
-- changed the ledger (a repeat adds nothing): a crash can lose neither. The sender
-- (gateway/usage_sender.py) reads entries, delivers them and deletes them once every sink took
-- them (store/ledger/outbox_redis.py). Fields (strings):
--   kind settle  event (the event's JSON without its cost, written by the proxy: it knows the
--                scope, models, tokens and request id), reservation, charged (what this settle
--                added to spent, amounts form; '-' for a release)
--   kind expire  reservation, charged (the estimate charged at expiry; '-' when released),
--                fields (the record's field prefixes, ',' separated), owner

local OUTBOX = (string.gsub(KEYS[1], ':ledger$', ':outbox'))

local function outbox(fields)
  local args = { 'XADD', OUTBOX, '*' }
  for _, x in ipairs(fields) do args[#args + 1] = x end
  redis.call(unpack(args))
end
