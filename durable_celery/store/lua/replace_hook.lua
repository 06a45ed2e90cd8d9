-- replace_hook: give an external event key to a new owner if the expected one holds it (CAS).
-- KEYS[1] hook
-- ARGV[1] expected owner  ARGV[2] new owner
-- Returns 1 when replaced, 0 when the key is free or held by someone else.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
