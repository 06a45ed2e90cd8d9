-- claim_redelivery: may this caller send a running run's pending steps again? Once per idle
-- period across every worker: true when the run is running and nothing was recorded nor sent
-- again for ARGV[1] ms; the claim is then stamped (redelivered_ms) with the server clock.
-- KEYS[1] meta
-- ARGV[1] idle ms
-- Returns 1 when claimed, 0 otherwise (not running, recently active, or gone).
local fields = redis.call('HMGET', KEYS[1], 'status', 'updated_ms', 'redelivered_ms')
if fields[1] ~= 'running' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = math.max(tonumber(fields[2]) or 0, tonumber(fields[3]) or 0)
if now - last < tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'redelivered_ms', string.format('%d', now))
return 1
