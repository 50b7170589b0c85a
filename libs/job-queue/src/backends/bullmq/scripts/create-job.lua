--[[
  Stores the metadata of a job being enqueued, with a provisional TTL: BullMQ's add is a separate
  call on other keys (another slot on Redis Cluster), so until the enqueue confirms the job
  (confirm-job.lua) or a worker starts it (start-attempt.lua), the metadata expires on its own. A
  process that dies, or a reply that is lost, between the two writes leaves nothing that lasts.

  KEYS[1] meta hash
  ARGV[1] provisional TTL (ms)
  ARGV[2], ARGV[3], ... field, value pairs

  Returns 1.
]]
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
