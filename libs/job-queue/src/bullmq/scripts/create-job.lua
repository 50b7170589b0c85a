--[[
  Creates the metadata of a new job, before BullMQ sees it, so every instance knows the job at once.

  KEYS[1] meta hash of the job
  ARGV[1] owner
  ARGV[2] job name
  ARGV[3] max attempts
  ARGV[4] created at (epoch ms)

  Returns 1, or 0 when the job already exists.
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'name', ARGV[2], 'state', 'queued', 'attempt', 0,
  'maxAttempts', ARGV[3], 'createdAt', ARGV[4], 'count', 0)
return 1
