--[[
  Records that a client still reads a job (a follower waiting for its next event), for jobs
  enqueued with `abandonAfterMs`; any other job is left as it is.

  KEYS[1] meta hash
  ARGV[1] now (epoch ms)

  Returns 1 when recorded, 0 otherwise.
]]
if redis.call('HEXISTS', KEYS[1], 'abandonAfterMs') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'readAt', ARGV[1])
return 1
