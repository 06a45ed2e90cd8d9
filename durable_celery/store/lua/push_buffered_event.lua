-- push_buffered_event: keep an event payload for the next wait on a key, for a while.
-- KEYS[1] buffer (list of "<expires_ms>:<payload>", oldest first)
-- ARGV[1] payload  ARGV[2] ttl ms
-- Returns the item's expiry (ms, Redis server clock). Each item carries its own expiry; the
-- list lives as long as its longest-lived item, so a short ttl never cuts a longer one.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local expires = string.format('%d', now + ttl)
redis.call('RPUSH', KEYS[1], expires .. ':' .. ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return tonumber(expires)
