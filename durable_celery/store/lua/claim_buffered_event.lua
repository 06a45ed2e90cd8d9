-- claim_buffered_event: the oldest unexpired event payload buffered for a key, claimed for one
-- waiter until settle_buffered_event removes it.
-- KEYS[1] buffer (list, oldest first) of "<expires_ms>:<payload>" (waiting) and
--   "c<expires_ms>:<owner length>:<owner><payload>" (claimed)
-- ARGV[1] owner (the waiting run and correlation id)
-- Returns the payload, or false (nil) when none is left. An item this owner claimed before (its
-- pass died before recording it) comes back to it first; an item claimed by another owner is
-- never returned. Expired items met on the way are dropped. One script, so two waiters never
-- claim the same item.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = nil
local index = 0  -- position in the list as it is after the removals so far
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local claimed = string.sub(item, 1, 1) == 'c'
  local head = 1
  if claimed then head = 2 end
  local sep = string.find(item, ':', head, true)
  local expires = string.sub(item, head, sep - 1)
  if tonumber(expires) <= now then
    redis.call('LREM', KEYS[1], 1, item)
  else
    if claimed then
      local sep2 = string.find(item, ':', sep + 1, true)
      local size = tonumber(string.sub(item, sep + 1, sep2 - 1))
      if string.sub(item, sep2 + 1, sep2 + size) == ARGV[1] then
        return string.sub(item, sep2 + size + 1)
      end
    elseif not found then
      found = {index, expires, string.sub(item, sep + 1)}
    end
    index = index + 1
  end
end
if not found then return false end
local owner = ARGV[1]
redis.call('LSET', KEYS[1], found[1], 'c' .. found[2] .. ':' .. #owner .. ':' .. owner .. found[3])
return found[3]
