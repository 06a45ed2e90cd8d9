-- claim_due_timers: take due timers, hiding each from other claimers for a while.
-- KEYS[1] timers (zset member -> deadline ms)
-- ARGV[1] claim ms  ARGV[2] limit
-- Returns the claimed members. A claimed timer's score moves to now + claim ms: if the claimer
-- dies before removing it, the timer is due again then (at-least-once; firing is idempotent).
-- "now" is the server's TIME, so worker clock skew cannot fire timers early or late.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now),
  'LIMIT', 0, tonumber(ARGV[2]))
local until_ms = string.format('%d', now + tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, member)
end
return due
