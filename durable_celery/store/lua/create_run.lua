-- create_run: create a run with its run_started entry and set its wake flag, unless it exists.
-- KEYS[1] log (stream)   KEYS[2] meta (hash)   KEYS[3] wake (string)   KEYS[4] payloads (hash)
-- KEYS[5] outcomes (hash)
-- ARGV[1] workflow name  ARGV[2] kind  ARGV[3] cid  ARGV[4] packed meta
-- ARGV[5] the payload's field: "" none, "p" the payload, "b" the reference of a payload the
--   caller wrote into KEYS[4] just before (large payloads do not pass through Lua)
-- ARGV[6] payload or reference
-- ARGV[7..] extra meta fields, as field, value pairs
-- Returns {1, entry id} when created, {0, created_ms} when the run exists (created_ms "0" when
-- only its log exists). The caller indexes the run in the global runs zset afterwards: that key
-- may live on another cluster slot, so it is not touched here.
local unpack = unpack or table.unpack

if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  return {0, redis.call('HGET', KEYS[2], 'created_ms') or '0'}
end
if ARGV[5] == 'b' and redis.call('HEXISTS', KEYS[4], ARGV[6]) == 0 then
  return redis.error_reply('durable: payload ' .. ARGV[6] .. ' is not in ' .. KEYS[4])
end

local fields = {'k', ARGV[2], 'c', ARGV[3], 'm', ARGV[4]}
if ARGV[5] ~= '' then
  fields[7] = ARGV[5]
  fields[8] = ARGV[6]
end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
-- The entry id's millisecond part is the server clock at creation.
local ms = string.match(id, '^(%d+)-')

redis.call('HSET', KEYS[2], 'workflow', ARGV[1], 'status', 'running',
  'created_ms', ms, 'updated_ms', ms)
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[3], '1')
-- Every append looks up keys in the outcomes hash, mostly keys that are not there yet. Redis
-- keeps a hash of up to hash-max-listpack-entries fields (512 by default) as a listpack, which
-- it scans whole on each lookup: it worked a quarter more per step of a 400-step run than of a
-- 50-step one. A value longer than hash-max-listpack-value (64 bytes by default) makes the
-- hash a hash table from the start, whose lookups cost the same at any length. No key is
-- "#table".
redis.call('HSET', KEYS[5], '#table', string.rep('-', 65))
return {1, id}
