--[[
  Takes or keeps the lease of a queue's foreign-worker bridge: one process at a time reads the
  queue's BullMQ events stream. A holder renews well within the lease; when it dies, the lease
  expires and another process takes it.

  KEYS[1] lease key
  ARGV[1] token of the caller (unique per process and queue)
  ARGV[2] lease (ms); '0' releases it (at shutdown, so that another process takes over at once)

  Returns 1 (renewed), 2 (taken: the caller was not the holder) or 0 (another process holds it).
]]
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
