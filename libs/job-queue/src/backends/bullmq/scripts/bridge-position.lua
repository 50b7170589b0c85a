--[[
  Records how far a queue's foreign-worker bridge has applied BullMQ's events stream, only while
  the caller holds the lease (a holder that lost it must not move the position of the next one).

  KEYS[1] lease key
  KEYS[2] position key
  ARGV[1] token of the caller
  ARGV[2] id of the last entry applied (every entry up to it is applied)

  Returns 1 when recorded, 0 when the caller no longer holds the lease.
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
