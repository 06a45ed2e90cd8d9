-- delete_hook: remove an external event key's hook only if the owner holds it.
-- KEYS[1] hook
-- ARGV[1] owner
-- Returns 1 when deleted, 0 when the key is free or held by someone else.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
