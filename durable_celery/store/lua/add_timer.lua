-- add_timer: register a timer due delay ms after the Redis server clock.
-- KEYS[1] timers (zset member -> deadline ms)
-- ARGV[1] member  ARGV[2] delay ms
-- Returns the timer's deadline (ms). Re-adding the same member keeps its first deadline, so a
-- pass that registers its timers again after a crash does not push them back.
-- Deadlines use the server's TIME, never a worker's clock: workers may disagree on the time.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + math.max(tonumber(ARGV[2]), 0)
redis.call('ZADD', KEYS[1], 'NX', string.format('%d', deadline), ARGV[1])
return tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
