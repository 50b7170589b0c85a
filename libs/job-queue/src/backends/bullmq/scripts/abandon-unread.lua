--[[
  Cancels a job that no client has read for its `abandonAfterMs`: appends `cancelled {reason:
  'abandoned'}` and starts the retention clock, as a cancel does. A job in a final state, or read
  recently enough, is left as it is.

  KEYS[1] meta hash
  KEYS[2] events stream
  KEYS[3] spare key of the job's slot, for the stream's compaction (include-keep-ended-job.lua)
  ARGV[1] retention (ms)
  (The time is Redis's own clock, which reads are recorded with.)

  Returns 'abandoned' | 'read' (read within its abandonAfterMs) | 'final' | 'gone'.
]]
--- @include "include-keep-ended-job"

local meta = redis.call('HMGET', KEYS[1], 'name', 'terminal', 'abandonAfterMs', 'readAt')
if not meta[1] then return 'gone' end
if meta[2] then return 'final' end
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
if not meta[3] or now - tonumber(meta[4] or now) <= tonumber(meta[3]) then return 'read' end
local id = redis.call('XADD', KEYS[2], '*', 'type', 'cancelled', 'data', '{"reason":"abandoned"}')
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'terminal', id, 'finishedAt', now)
keepEndedJob(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 'abandoned'
