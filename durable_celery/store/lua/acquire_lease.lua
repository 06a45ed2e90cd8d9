-- acquire_lease: take the run's orchestration lease, or renew it if the token already holds it.
-- KEYS[1] lease
-- ARGV[1] token  ARGV[2] ttl ms
-- Returns 1 when held by the token afterwards, 0 when another token holds it.
-- The value is "<ttl_ms>:<token>" so that fenced appends renew it for the same ttl.
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if string.sub(cur, sep + 1) ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[2])
return 1
