-- append_fenced: append the orchestrator's batch, only while it holds the run's lease.
-- KEYS[1] lease  KEYS[2] log  KEYS[3] meta  KEYS[4] outcomes  KEYS[5] outbox  KEYS[6] wake
-- ARGV[1] lease token  ARGV[2] new status ("" keeps it)  ARGV[3] n, the number of events
-- ARGV[4] retention ms ("" = none; the caller sends it only with a terminal status)
-- ARGV[5] read after: "" = do not read, "-" = read the whole log, else an entry id
-- ARGV[6 .. 5+6n] per event: kind, cid, packed meta, "1"/"0" has payload, payload, outcome key
--   (outcome key "" = not append-once)
-- ARGV[6+6n ..] outbox members to add
-- Returns the entry ids (for an outcome already recorded: the existing id, nothing appended),
-- or {ids, entries after ARGV[5] appended by others before this batch} when reading; -1 when the lease is not held by the token,
-- -2 when the run does not exist.
local unpack = unpack or table.unpack

-- The lease value is "<ttl_ms>:<token>"; renewing it keeps the ttl it was acquired with.
local lease = redis.call('GET', KEYS[1])
if not lease then return -1 end
local sep = string.find(lease, ':', 1, true)
if string.sub(lease, sep + 1) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[3]) == 0 then return -2 end
redis.call('PEXPIRE', KEYS[1], string.sub(lease, 1, sep - 1))

-- Entries others appended after what the caller has read. Read before this batch is added:
-- the caller knows its own entries (it sent them), so only theirs cross the wire.
local others = nil
if ARGV[5] ~= '' then
  local start = '-'
  if ARGV[5] ~= '-' then start = '(' .. ARGV[5] end
  others = redis.call('XRANGE', KEYS[2], start, '+')
end

local n = tonumber(ARGV[3])
local ids = {}
local last_new = nil
local i = 6
for e = 1, n do
  local okey = ARGV[i + 5]
  local existing = false
  if okey ~= '' then existing = redis.call('HGET', KEYS[4], okey) end
  if existing then
    ids[e] = existing
  else
    local fields = {'k', ARGV[i], 'c', ARGV[i + 1], 'm', ARGV[i + 2]}
    if ARGV[i + 3] == '1' then
      fields[7] = 'p'
      fields[8] = ARGV[i + 4]
    end
    local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
    -- Recorded in the same script as the append: a second outcome for the key cannot slip in.
    if okey ~= '' then redis.call('HSET', KEYS[4], okey, id) end
    ids[e] = id
    last_new = id
  end
  i = i + 6
end

for j = i, #ARGV do
  redis.call('SADD', KEYS[5], ARGV[j])
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
if not keep then
  local left = redis.call('PTTL', KEYS[3])
  if left > 0 then keep = left end
end
if keep then
  for k = 2, #KEYS do redis.call('PEXPIRE', KEYS[k], keep) end
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 or left > keep then redis.call('PEXPIRE', KEYS[1], keep) end
end

if ARGV[5] == '' then return ids end
return {ids, others}
