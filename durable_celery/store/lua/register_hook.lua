-- register_hook: claim an external event key for an owner, unless someone holds it.
-- KEYS[1] hook
-- ARGV[1] owner
-- Returns false (nil) when claimed now, else the current owner (which may be ARGV[1] itself).
-- One script rather than SET NX then GET: the key could vanish between the two.
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return false
