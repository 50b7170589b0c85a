--[[
  Records that a client still reads a job (a follower waiting for its next event), for jobs
  enqueued with `abandonAfterMs`; any other job is left as it is.

  KEYS[1] meta hash
  (The time is Redis's own clock, the same for every instance.)

  Returns 1 when recorded, 0 otherwise.
]]
if redis.call('HEXISTS', KEYS[1], 'abandonAfterMs') == 0 then return 0 end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'readAt', now[1] * 1000 + math.floor(now[2] / 1000))
return 1
