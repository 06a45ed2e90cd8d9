-- record_and_begin: append-once an outcome; when that wakes the run, take its orchestration lease
-- and return what begin_pass would, so the recording worker continues the run (one hop) with no
-- further round trip.
-- KEYS[1] meta  KEYS[2] outcomes  KEYS[3] log  KEYS[4] wake  KEYS[5] waitfor  KEYS[6] lease
-- KEYS[7] outbox
-- ARGV[1] append-once key  ARGV[2] kind  ARGV[3] cid  ARGV[4] packed meta
-- ARGV[5] the payload's field ("" none, "p", "b": see create_run; a "b" reference names a
--   payload in KEYS[9])  ARGV[6] payload or reference  ARGV[7] lease token  ARGV[8] lease ttl ms
-- ARGV[9] read after: "-" = the whole log, else an entry id
-- ARGV[10] the identity of the call a step sent first was sent for ("" otherwise): see
--   record_outcome
-- KEYS[8] early  KEYS[9] payloads
-- Returns {entry id, created 1/0, woke 1/0, acquired 1/0, outbox, entries after ARGV[9]} (the
-- last three only when woke; {"", 2, 0, 0} when kept early, {"", 3, 0, 0} when dropped); -2 when the run does not exist.
local unpack = unpack or table.unpack

local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return {existing, 0, 0, 0} end
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if ARGV[5] == 'b' and redis.call('HEXISTS', KEYS[9], ARGV[6]) == 0 then
  return redis.error_reply('durable: payload ' .. ARGV[6] .. ' is not in ' .. KEYS[9])
end

if ARGV[10] ~= '' then
  local call = redis.call('HGET', KEYS[2], '=' .. ARGV[3])
  if not call then
    local early = {'k', ARGV[2], 'c', ARGV[3], 'm', ARGV[4], 'o', ARGV[1], 'x', ARGV[10]}
    if ARGV[5] ~= '' then
      early[11] = ARGV[5]
      early[12] = ARGV[6]
    end
    redis.call('XADD', KEYS[8], '*', unpack(early))
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then
      redis.call('PEXPIRE', KEYS[8], left)
      if ARGV[5] == 'b' then redis.call('PEXPIRE', KEYS[9], left) end
    end
    return {'', 2, 0, 0}
  end
  if call ~= ARGV[10] then return {'', 3, 0, 0} end
end

local fields = {'k', ARGV[2], 'c', ARGV[3], 'm', ARGV[4]}
if ARGV[5] ~= '' then
  fields[7] = ARGV[5]
  fields[8] = ARGV[6]
end
local id = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('HSET', KEYS[1], 'updated_ms', string.match(id, '^(%d+)-'))

-- The same wake rule as record_outcome: a recorded wait condition decides.
local needed = true
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'completed' or status == 'failed' or status == 'cancelled' then
  needed = false  -- a late outcome (a race's loser) is kept, but a finished run has no pass to run
elseif redis.call('EXISTS', KEYS[5]) == 1 then
  if redis.call('HEXISTS', KEYS[5], 'c:' .. ARGV[3]) == 0 then
    needed = false
  elseif redis.call('HGET', KEYS[5], 'mode') == 'all' then
    needed = redis.call('HINCRBY', KEYS[5], 'n', -1) <= 0
  end
end
local woke = 0
if needed and redis.call('SET', KEYS[4], '1', 'NX') then woke = 1 end
local left = redis.call('PTTL', KEYS[1])
if left > 0 then
  redis.call('PEXPIRE', KEYS[2], left)
  if woke == 1 then redis.call('PEXPIRE', KEYS[4], left) end
  if ARGV[5] == 'b' then redis.call('PEXPIRE', KEYS[9], left) end
end
if woke == 0 then return {id, 1, 0, 0} end

-- We set the flag, so no pass is queued or running: the lease is free unless a dead pass's
-- lease has not expired yet (then the caller enqueues a pass for later).
if redis.call('SET', KEYS[6], ARGV[8] .. ':' .. ARGV[7], 'NX', 'PX', ARGV[8]) == false then
  return {id, 1, 1, 0}
end
local start = ARGV[9]
if start ~= '-' then start = '(' .. start end
return {id, 1, 1, 1, redis.call('SMEMBERS', KEYS[7]), redis.call('XRANGE', KEYS[3], start, '+')}
