-- request_wake: set the run's wake flag.
-- KEYS[1] meta  KEYS[2] wake
-- ARGV: none
-- Returns 1 when the flag was clear (the caller must enqueue a pass), 0 when already set,
-- -2 when the run does not exist (no orphan flag is created).
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if not redis.call('SET', KEYS[2], '1', 'NX') then return 0 end
-- A finished run in retention expires whole: a new flag must not outlive it.
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
return 1
