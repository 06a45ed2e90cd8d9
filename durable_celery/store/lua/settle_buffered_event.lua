-- settle_buffered_event: remove the buffered event an owner claimed (its outcome is recorded).
-- KEYS[1] buffer (see claim_buffered_event)  ARGV[1] owner
-- Returns 1 when an item was removed, 0 when the owner held none.
local prefix = ':' .. #ARGV[1] .. ':' .. ARGV[1]
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if string.sub(item, 1, 1) == 'c' then
    local sep = string.find(item, ':', 2, true)
    if string.sub(item, sep, sep + #prefix - 1) == prefix then
      redis.call('LREM', KEYS[1], 1, item)
      return 1
    end
  end
end
return 0
