-- request_wake: set the run's wake flag.
-- KEYS[1] meta  KEYS[2] wake
-- ARGV: none
-- Returns 1 when the flag was clear (the caller must enqueue a pass), 0 when already set,
-- -2 when the run does not exist (no orphan flag is created).
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('SET', KEYS[2], '1', 'NX') then return 1 end
return 0
