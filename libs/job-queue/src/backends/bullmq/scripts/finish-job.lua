--[[
  Appends the one terminal event of a job, compacts its stream and starts the retention clock on all
  of its keys (include-keep-ended-job.lua).
  Whoever comes first wins (worker completing, worker failing, any instance cancelling); later
  calls change nothing.

  KEYS[1] meta hash
  KEYS[2] events stream
  KEYS[3] spare key of the job's slot, for the stream's compaction (include-keep-ended-job.lua)
  ARGV[1] terminal type and final state: completed | failed | cancelled
  ARGV[2] event data (JSON)
  ARGV[3] now (epoch ms)
  ARGV[4] retention (ms)
  ARGV[5] meta field to store the outcome in (result | error), or ''
  ARGV[6] its value (JSON)
  ARGV[7] attempt the caller belongs to, or '' for any (cancel)

  Returns {'ok', eventId, attempts started before} | {'final', state} | {'stale'} | {'gone'}.
  (A cancel removes the BullMQ job only when no attempt had started: a started one stays in
  BullMQ's failed set with its logs.)
]]
--- @include "include-keep-ended-job"

local meta = redis.call('HMGET', KEYS[1], 'name', 'terminal', 'state', 'attempt')
if not meta[1] then return {'gone'} end
-- A retry that finds its write done still writes (the same value): replica acks then cover the first write.
if meta[2] then
  redis.call('HSET', KEYS[1], 'terminal', meta[2])
  return {'final', meta[3]}
end
if ARGV[7] ~= '' and meta[4] ~= ARGV[7] then return {'stale'} end
local id = redis.call('XADD', KEYS[2], '*', 'type', ARGV[1], 'data', ARGV[2])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'state', ARGV[1], 'terminal', id, 'finishedAt', ARGV[3], ARGV[5], ARGV[6])
else
  redis.call('HSET', KEYS[1], 'state', ARGV[1], 'terminal', id, 'finishedAt', ARGV[3])
end
keepEndedJob(KEYS[1], KEYS[2], KEYS[3], ARGV[4])
return {'ok', id, tonumber(meta[4])}
