-- append_fenced: append the orchestrator's batch, only while it holds the run's lease.
-- KEYS[1] lease  KEYS[2] log  KEYS[3] meta  KEYS[4] outcomes  KEYS[5] outbox  KEYS[6] wake
-- KEYS[7] waitfor  KEYS[8] early (outcomes of steps sent before their scheduling was recorded)
-- KEYS[9] payloads (large payloads, written by the caller just before this script)
-- ARGV[1] lease token  ARGV[2] new status ("" keeps it)  ARGV[3] n, the number of events
-- ARGV[4] retention ms ("" = none; the caller sends it only with a terminal status)
-- ARGV[5] read after: "" = do not read, "-" = read the whole log, else an entry id
-- ARGV[6] finish the pass when nothing else arrived: "" = no, "-" = yes (any outcome wakes the
--   run), "all" / "any" = yes, waking only for the listed outcomes (see finish_pass)
-- ARGV[7] for "all": how many of them are still missing
-- ARGV[8] how many entries the log holds up to ARGV[5], as the caller read them ("" unknown):
--   when the log still holds that many, nobody else appended and the read is skipped
-- ARGV[9] m, how many cids follow  ARGV[10 .. 9+m] the cids the suspended workflow waits on
-- then per event (7 slots): kind, cid, packed meta, the payload's field ("" none, "p" the
--   payload, "b" the reference of a payload in KEYS[9]), payload or reference, outcome key
--   (outcome key "" = not append-once; the cid for an outcome; ">cid" for a step_scheduled
--   entry), and for a step_scheduled entry the identity of the call ("<name>:<argument
--   hash>"), kept as "=cid"; neither ">cid" nor "=cid" is kept when the batch settles the step
-- then the outbox members to add
-- Returns the entry ids (for an outcome already recorded: the existing id, nothing appended),
-- or, when reading, {ids, entries after ARGV[5] appended by others before this batch, entries
-- promoted from KEYS[8] after it, 1/0 finished}; -1 when the lease is not held by the token,
-- -2 when the run does not exist.
local unpack = unpack or table.unpack

-- The lease value is "<ttl_ms>:<token>"; renewing it keeps the ttl it was acquired with.
local lease = redis.call('GET', KEYS[1])
if not lease then return -1 end
local sep = string.find(lease, ':', 1, true)
if string.sub(lease, sep + 1) ~= ARGV[1] then return -1 end
-- -2: no run; -1: a live run; > 0: a finished run's remaining retention (see below).
local run_ttl = redis.call('PTTL', KEYS[3])
if run_ttl == -2 then return -2 end
local n = tonumber(ARGV[3])
local m = tonumber(ARGV[9])
for at = 10 + m, 9 + m + 7 * n, 7 do
  if ARGV[at + 3] == 'b' and redis.call('HEXISTS', KEYS[9], ARGV[at + 4]) == 0 then
    return redis.error_reply('durable: payload ' .. ARGV[at + 4] .. ' is not in ' .. KEYS[9])
  end
end
redis.call('PEXPIRE', KEYS[1], string.sub(lease, 1, sep - 1))

-- Entries others appended after what the caller has read. Read before this batch is added:
-- the caller knows its own entries (it sent them), so only theirs cross the wire.
-- The log only ever grows (entries are never deleted from it), so when it holds as many entries
-- as the caller has read, nothing came after them: XLEN costs a fraction of an empty XRANGE.
local others = nil
if ARGV[5] ~= '' then
  if ARGV[5] ~= '-' and ARGV[8] ~= '' and redis.call('XLEN', KEYS[2]) == tonumber(ARGV[8]) then
    others = {}
  else
    local start = '-'
    if ARGV[5] ~= '-' then start = '(' .. ARGV[5] end
    others = redis.call('XRANGE', KEYS[2], start, '+')
  end
end

-- The batch's append-once keys are looked up in one HMGET, and what it records goes into the
-- outcomes hash in one HSET after the loop (a key twice in the batch is found the second time,
-- as it would be in the hash); in chunks, as Lua's unpack takes a few thousand values at most.
local function chunked(command, key, items)
  local replies = {}
  for s = 1, #items, 1000 do
    local reply = redis.call(command, key, unpack(items, s, math.min(s + 999, #items)))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do replies[#replies + 1] = value end
    end
  end
  return replies
end
local wanted = {}
local settles = {}  -- cids whose outcome the batch records (an outcome's key is its cid)
for at = 15 + m, 14 + m + 7 * n, 7 do
  if ARGV[at] ~= '' then
    wanted[#wanted + 1] = ARGV[at]
    if ARGV[at] == ARGV[at - 4] then settles[ARGV[at]] = true end
  end
end
local found = {}
for j, value in ipairs(chunked('HMGET', KEYS[4], wanted)) do
  if value then found[wanted[j]] = value end
end

-- The step_scheduled entry of a step settled in the batch that recorded it (see below) has no
-- key of its own: it is the entry right before that outcome, as that batch appended them. A
-- batch appended again (its reply was lost) finds it there, and appends nothing twice.
local function scheduled_with(outcome_id, kind, cid)
  local entry = redis.call('XREVRANGE', KEYS[2], outcome_id, '-', 'COUNT', 2)[2]
  if entry and entry[2][2] == kind and entry[2][4] == cid then return entry[1] end
  return nil
end

local ids = {}
local recorded = {}
-- A step's scheduled key (">cid") and call identity ("=cid") serve only while the step runs:
-- its retry's timer finds its entry by the one, an outcome sent ahead of its scheduling is
-- matched by the other, and every script looks up the cid's outcome key first. A step settled
-- in this very batch (an inline step) gets its outcome key only, and the hash a third of the
-- fields it had.
local held = {}
local settled = {}
local last_new = nil
local i = 10 + m
for e = 1, n do
  local okey = ARGV[i + 5]
  local cid = ARGV[i + 1]
  local existing = okey ~= '' and found[okey]
  if not existing and okey ~= '' and okey ~= cid and settles[cid] and found[cid] then
    existing = scheduled_with(found[cid], ARGV[i], cid)
  end
  if existing then
    ids[e] = existing
  else
    local fields = {'k', ARGV[i], 'c', cid, 'm', ARGV[i + 2]}
    if ARGV[i + 3] ~= '' then
      fields[7] = ARGV[i + 3]
      fields[8] = ARGV[i + 4]
    end
    local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
    -- Recorded in the same script as the append: a second outcome for the key cannot slip in.
    if okey == cid then
      settled[cid] = true
      recorded[#recorded + 1] = okey
      recorded[#recorded + 1] = id
    elseif okey ~= '' then
      held[#held + 1] = {cid, okey, id}
    end
    if ARGV[i + 6] ~= '' then
      held[#held + 1] = {cid, '=' .. cid, ARGV[i + 6]}
    end
    if okey ~= '' then found[okey] = id end
    ids[e] = id
    last_new = id
  end
  i = i + 7
end
for _, key in ipairs(held) do
  if not settled[key[1]] then
    recorded[#recorded + 1] = key[2]
    recorded[#recorded + 1] = key[3]
  end
end
chunked('HSET', KEYS[4], recorded)

for j = i, #ARGV do
  redis.call('SADD', KEYS[5], ARGV[j])
end

-- A step is sent before its scheduling is recorded when its input travels in the message; an
-- outcome that lands first waits in KEYS[8] (see record_outcome) and follows its step_scheduled
-- entry into the log here, in the order it arrived, when that entry is for the same call (its
-- identity, "=cid"). Dropped: a duplicate (its key taken), and an outcome for a call the run
-- no longer makes under that cid (the pass that sent it died, and code deployed since replays
-- differently).
local promoted = {}
if redis.call('EXISTS', KEYS[8]) == 1 then
  for _, item in ipairs(redis.call('XRANGE', KEYS[8], '-', '+')) do
    local f = {}
    for j = 1, #item[2], 2 do f[item[2][j]] = item[2][j + 1] end
    local call = redis.call('HGET', KEYS[4], '=' .. f['c'])
    if redis.call('HEXISTS', KEYS[4], f['o']) == 1 or (call and call ~= f['x']) then
      redis.call('XDEL', KEYS[8], item[1])
    elseif call then
      redis.call('XDEL', KEYS[8], item[1])
      local fields = {'k', f['k'], 'c', f['c'], 'm', f['m']}
      if f['p'] then
        fields[7] = 'p'
        fields[8] = f['p']
      elseif f['b'] then
        fields[7] = 'b'
        fields[8] = f['b']
      end
      local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
      redis.call('HSET', KEYS[4], f['o'], id)
      promoted[#promoted + 1] = {id, fields}
      last_new = id
    end
  end
end

local now
if last_new then
  now = string.match(last_new, '^(%d+)-')
elseif ARGV[2] ~= '' then
  local t = redis.call('TIME')
  now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[3], 'status', ARGV[2], 'updated_ms', now)
elseif now then
  redis.call('HSET', KEYS[3], 'updated_ms', now)
end

-- A finished run expires whole: every per-run key gets the same deadline. A run that already
-- has one (finished earlier) passes it on to keys created since (a new outbox), so nothing of
-- the run outlives it. The lease keeps its own ttl when that is shorter.
local keep = tonumber(ARGV[4])
if not keep and run_ttl > 0 then keep = run_ttl end
if keep then
  for k = 2, #KEYS do redis.call('PEXPIRE', KEYS[k], keep) end
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 or left > keep then redis.call('PEXPIRE', KEYS[1], keep) end
end

if ARGV[5] == '' then return ids end

-- Finish the pass here (what finish_pass does) when the caller asked and nothing arrived that
-- the workflow has not seen: saves the pass its last round trip.
local finished = 0
if ARGV[6] ~= '' and #others == 0 and #promoted == 0 then
  redis.call('DEL', KEYS[5], KEYS[6], KEYS[1], KEYS[7])
  if ARGV[6] ~= '-' then
    local fields = {'mode', ARGV[6], 'n', ARGV[7]}
    for j = 10, 9 + m do
      fields[#fields + 1] = 'c:' .. ARGV[j]
      fields[#fields + 1] = '1'
    end
    redis.call('HSET', KEYS[7], unpack(fields))
    local left = redis.call('PTTL', KEYS[2])
    if left > 0 then redis.call('PEXPIRE', KEYS[7], left) end
  end
  finished = 1
end
return {ids, others, promoted, finished}
