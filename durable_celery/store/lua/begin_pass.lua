-- begin_pass: take (or renew) the run's lease, and in the same round trip return the outbox and
-- the log entries after what the caller has already read.
-- KEYS[1] lease  KEYS[2] outbox  KEYS[3] log
-- ARGV[1] token  ARGV[2] ttl ms  ARGV[3] read after: "-" = the whole log, else an entry id
-- Returns {1, outbox members, entries} when the token holds the lease afterwards,
-- {0, remaining lease ms} when another token holds it.
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if string.sub(cur, sep + 1) ~= ARGV[1] then
    return {0, redis.call('PTTL', KEYS[1])}
  end
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[2])
local start = ARGV[3]
if start ~= '-' then start = '(' .. start end
return {1, redis.call('SMEMBERS', KEYS[2]), redis.call('XRANGE', KEYS[3], start, '+')}
