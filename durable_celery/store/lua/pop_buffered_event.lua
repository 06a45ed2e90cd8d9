-- pop_buffered_event: take the oldest unexpired event payload buffered for a key.
-- KEYS[1] buffer (list of "<expires_ms>:<payload>", oldest first)
-- ARGV: none
-- Returns the payload, or false (nil) when none is left. Expired items met on the way are
-- dropped. One script, so two waiters popping at once never get the same item.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
while true do
  local item = redis.call('LPOP', KEYS[1])
  if not item then return false end
  local sep = string.find(item, ':', 1, true)
  if tonumber(string.sub(item, 1, sep - 1)) > now then return string.sub(item, sep + 1) end
end
