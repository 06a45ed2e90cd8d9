-- finish_pass: end an orchestrator pass that has seen the whole log.
-- KEYS[1] lease  KEYS[2] log  KEYS[3] outbox  KEYS[4] wake
-- ARGV[1] lease token  ARGV[2] id of the last entry the pass read
-- Returns 1 when done (outbox, wake flag and lease deleted), 0 when entries arrived after
-- ARGV[2] (everything kept: the caller reads and passes again), -1 when the lease is not ours.
local lease = redis.call('GET', KEYS[1])
if not lease then return -1 end
local sep = string.find(lease, ':', 1, true)
if string.sub(lease, sep + 1) ~= ARGV[1] then return -1 end

-- Entries are never deleted from a live log, so the newest entry is the log's tail.
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local tail = ''
if last[1] then tail = last[1][1] end
if tail ~= ARGV[2] then return 0 end

redis.call('DEL', KEYS[3], KEYS[4], KEYS[1])
return 1
