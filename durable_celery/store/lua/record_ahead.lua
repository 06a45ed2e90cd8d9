-- record_ahead: record an outcome the caller has already continued the run with (speculative
-- continuation), at the entry id the caller chose, only if the run is as the caller saw it;
-- then either begin a pass (take the lease) or append the steps the continuation sent and
-- finish the pass, as append_fenced does with a finish mode.
-- KEYS[1] lease  KEYS[2] log  KEYS[3] meta  KEYS[4] outcomes  KEYS[5] outbox  KEYS[6] wake
-- KEYS[7] waitfor  KEYS[8] early  KEYS[9] payloads
-- ARGV[1] lease token  ARGV[2] lease ttl ms  ARGV[3] the log's last entry id as the caller saw it
-- ARGV[4] the outcome's append-once key  ARGV[5] identity of the call ("" = do not check)
-- ARGV[6] n, scheduled entries that follow (0: begin a pass)
-- ARGV[7] waitfor mode when finishing: "-" (any outcome wakes), "all" or "any"
-- ARGV[8] for "all": how many are still missing  ARGV[9] m, how many cids follow
-- ARGV[10 .. 9+m] the cids the suspended workflow waits on
-- then the outcome (6 slots): id, kind, cid, packed meta, the payload's field ("" none, "p" the
--   payload, "b" the reference of a payload the caller wrote into KEYS[9]), payload or reference
-- then per scheduled entry (7 slots): id, kind, cid, packed meta, payload field, payload or
--   reference, identity
-- Returns {0, reason} when refused (nothing written), {1} begun (lease taken, wake flag set),
-- {2} finished, {3, promoted entries} continued (lease taken, wake flag set).
local unpack = unpack or table.unpack

if redis.call('EXISTS', KEYS[3]) == 0 then return {0, 'missing'} end
if redis.call('HGET', KEYS[3], 'status') ~= 'running' then return {0, 'status'} end
if redis.call('HEXISTS', KEYS[4], ARGV[4]) == 1 then return {0, 'recorded'} end
local m = tonumber(ARGV[9])
local o = 10 + m
if ARGV[5] ~= '' and redis.call('HGET', KEYS[4], '=' .. ARGV[o + 2]) ~= ARGV[5] then
  return {0, 'call'}
end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[6]) == 1 then
  return {0, 'busy'}
end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #top == 0 or top[1][1] ~= ARGV[3] then return {0, 'moved'} end
local n = tonumber(ARGV[6])
-- Payloads referenced ("b") must be in KEYS[9]; kinds: each entry's kind slot.
local kinds = {o + 1}
for k = 1, n do kinds[k + 1] = o + 7 * k end
for _, at in ipairs(kinds) do
  if ARGV[at + 3] == 'b' and redis.call('HEXISTS', KEYS[9], ARGV[at + 4]) == 0 then
    return redis.error_reply('durable: payload ' .. ARGV[at + 4] .. ' is not in ' .. KEYS[9])
  end
end

local function entry(at)
  local fields = {'k', ARGV[at], 'c', ARGV[at + 1], 'm', ARGV[at + 2]}
  if ARGV[at + 3] ~= '' then
    fields[7] = ARGV[at + 3]
    fields[8] = ARGV[at + 4]
  end
  return fields
end

-- The first write: an id not above the stream's top (the caller's clock) refuses it whole.
local added = redis.pcall('XADD', KEYS[2], ARGV[o], unpack(entry(o + 1)))
if type(added) == 'table' and added.err then return {0, 'moved'} end
redis.call('HSET', KEYS[4], ARGV[4], ARGV[o])
local last = ARGV[o]

local i = o + 6
for _ = 1, n do
  redis.call('XADD', KEYS[2], ARGV[i], unpack(entry(i + 1)))
  redis.call('HSET', KEYS[4], '>' .. ARGV[i + 2], ARGV[i])
  if ARGV[i + 6] ~= '' then redis.call('HSET', KEYS[4], '=' .. ARGV[i + 2], ARGV[i + 6]) end
  last = ARGV[i]
  i = i + 7
end

-- Outcomes of the steps just scheduled that landed first (see append_fenced).
local promoted = {}
if n > 0 and redis.call('EXISTS', KEYS[8]) == 1 then
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
      last = id
    end
  end
end
redis.call('HSET', KEYS[3], 'updated_ms', string.match(last, '^(%d+)-'))

if n > 0 and #promoted == 0 then
  redis.call('DEL', KEYS[5], KEYS[7])
  if ARGV[7] ~= '-' then
    local fields = {'mode', ARGV[7], 'n', ARGV[8]}
    for j = 10, 9 + m do
      fields[#fields + 1] = 'c:' .. ARGV[j]
      fields[#fields + 1] = '1'
    end
    redis.call('HSET', KEYS[7], unpack(fields))
  end
  return {2}
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[6], '1')
if n == 0 then return {1} end
return {3, promoted}
