-- set_status: change a run's status and stamp updated_ms with the server clock.
-- KEYS[1] meta
-- ARGV[1] status
-- Returns 1, or -2 when the run does not exist (no orphan meta hash is created).
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_ms', now)
return 1
