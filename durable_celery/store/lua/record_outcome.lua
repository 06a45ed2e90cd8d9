-- record_outcome: append-once an outcome under a key, and optionally set the wake flag.
-- KEYS[1] meta  KEYS[2] outcomes  KEYS[3] log  KEYS[4] wake  (KEYS[5] to KEYS[7]: see below)
-- ARGV[1] append-once key  ARGV[2] "1" to set the wake flag  ARGV[3] kind  ARGV[4] cid
-- ARGV[5] packed meta  ARGV[6] the payload's field ("" none, "p", "b": see create_run; a "b"
--   reference names a payload in KEYS[7])  ARGV[7] payload or reference
-- ARGV[8] "1": wake whatever the run waits for (control entries)  KEYS[5] waitfor
-- ARGV[9] for a step sent before its scheduling was recorded, the identity of the call it was
--   sent for ("<name>:<argument hash>"; "" otherwise): until a step_scheduled entry for that cid
--   is in ("=cid"), the outcome waits in KEYS[6] (early), without waking the run (the pass that
--   sent the step is running, or died and the sweep re-drives the run); when the cid is
--   scheduled for another call, the outcome is dropped (code deployed since replays otherwise)
-- KEYS[7] payloads
-- Returns {entry id, created 1/0, woke 1/0} ({"", 2, 0} when kept early, {"", 3, 0} when
-- dropped); -2 when the run does not exist (a late outcome
-- for a deleted run must not recreate an orphan log that nothing would ever delete).
local unpack = unpack or table.unpack

local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return {existing, 0, 0} end
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if ARGV[6] == 'b' and redis.call('HEXISTS', KEYS[7], ARGV[7]) == 0 then
  return redis.error_reply('durable: payload ' .. ARGV[7] .. ' is not in ' .. KEYS[7])
end

if ARGV[9] ~= '' then
  local call = redis.call('HGET', KEYS[2], '=' .. ARGV[4])
  if not call then
    local early = {'k', ARGV[3], 'c', ARGV[4], 'm', ARGV[5], 'o', ARGV[1], 'x', ARGV[9]}
    if ARGV[6] ~= '' then
      early[11] = ARGV[6]
      early[12] = ARGV[7]
    end
    redis.call('XADD', KEYS[6], '*', unpack(early))
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then
      redis.call('PEXPIRE', KEYS[6], left)
      if ARGV[6] == 'b' then redis.call('PEXPIRE', KEYS[7], left) end
    end
    return {'', 2, 0}
  end
  if call ~= ARGV[9] then return {'', 3, 0} end
end

local fields = {'k', ARGV[3], 'c', ARGV[4], 'm', ARGV[5]}
if ARGV[6] ~= '' then
  fields[7] = ARGV[6]
  fields[8] = ARGV[7]
end
local id = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('HSET', KEYS[1], 'updated_ms', string.match(id, '^(%d+)-'))

-- Whoever sets the flag while it was clear must enqueue a pass; a pass already queued or
-- running will see this entry because finish_pass refuses to clear the flag past it.
-- A suspended workflow that said what it waits for (KEYS[5], see finish_pass) is woken only
-- when that is met; control entries (ARGV[8] = "1": cancel, resume, signals) always wake.
local woke = 0
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'completed' or status == 'failed' or status == 'cancelled' then
  ARGV[2] = '0'  -- a late outcome (a race's loser) is kept, but a finished run has no pass to run
end
if ARGV[2] == '1' then
  local needed = true
  if ARGV[8] ~= '1' and redis.call('EXISTS', KEYS[5]) == 1 then
    if redis.call('HEXISTS', KEYS[5], 'c:' .. ARGV[4]) == 0 then
      needed = false
    elseif redis.call('HGET', KEYS[5], 'mode') == 'all' then
      needed = redis.call('HINCRBY', KEYS[5], 'n', -1) <= 0
    end
  end
  if needed and redis.call('SET', KEYS[4], '1', 'NX') then woke = 1 end
end

-- A finished run in retention expires whole: keys created now (the first outcome, a new wake
-- flag) must not outlive it.
local left = redis.call('PTTL', KEYS[1])
if left > 0 then
  redis.call('PEXPIRE', KEYS[2], left)
  if woke == 1 then redis.call('PEXPIRE', KEYS[4], left) end
  if ARGV[6] == 'b' then redis.call('PEXPIRE', KEYS[7], left) end
end
return {id, 1, woke}
