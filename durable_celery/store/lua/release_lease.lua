-- release_lease: delete the lease only if the token holds it (compare-and-delete).
-- KEYS[1] lease
-- ARGV[1] token
-- Returns 1 when released, 0 when the lease was free or held by another token.
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local sep = string.find(cur, ':', 1, true)
if string.sub(cur, sep + 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
