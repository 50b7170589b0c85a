--[[
  Marks a job queued again after a failed attempt that BullMQ will retry.

  KEYS[1] meta hash
  ARGV[1] attempt that failed

  Returns 'ok' | 'final' (the job ended meanwhile, e.g. cancelled) | 'stale'.
]]
if redis.call('HEXISTS', KEYS[1], 'terminal') == 1 then return 'final' end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 'stale' end
redis.call('HSET', KEYS[1], 'state', 'queued')
return 'ok'
