-- finish_pass: end an orchestrator pass that has seen the whole log.
-- KEYS[1] lease  KEYS[2] log  KEYS[3] outbox  KEYS[4] wake  KEYS[5] waitfor
-- ARGV[1] lease token  ARGV[2] id of the last entry the pass read
-- ARGV[3] wait mode: "" (any outcome wakes the run), "all" or "any"
-- ARGV[4] for "all": how many of the listed outcomes are still missing
-- ARGV[5 ..] correlation ids the suspended workflow waits on
-- Returns 1 when done (outbox, wake flag and lease deleted, waitfor replaced), 0 when entries
-- arrived after ARGV[2] (everything kept: the caller reads and passes again), -1 when the lease
-- is not ours.
local unpack = unpack or table.unpack
local lease = redis.call('GET', KEYS[1])
if not lease then return -1 end
local sep = string.find(lease, ':', 1, true)
if string.sub(lease, sep + 1) ~= ARGV[1] then return -1 end

-- Entries are never deleted from a live log, so the newest entry is the log's tail.
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local tail = ''
if last[1] then tail = last[1][1] end
if tail ~= ARGV[2] then return 0 end

redis.call('DEL', KEYS[3], KEYS[4], KEYS[1], KEYS[5])
-- From now on record_outcome wakes the run only when this condition is met: a gather of 100
-- costs one pass when its last branch lands, not one per branch.
if ARGV[3] ~= '' then
  local fields = {'mode', ARGV[3], 'n', ARGV[4]}
  for j = 5, #ARGV do
    fields[#fields + 1] = 'c:' .. ARGV[j]
    fields[#fields + 1] = '1'
  end
  redis.call('HSET', KEYS[5], unpack(fields))
  local left = redis.call('PTTL', KEYS[2])
  if left > 0 then redis.call('PEXPIRE', KEYS[5], left) end
end
return 1
