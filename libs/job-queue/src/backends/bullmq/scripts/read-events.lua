--[[
  Reads one page of a job's events for one caller. The owner is checked before any event is read,
  so another owner's job costs what a missing one costs (no size or existence oracle, no read
  amplification), and the cursor must be an id this job issued: a cursor beyond the last event
  would otherwise wait forever for an entry that never comes.

  KEYS[1] meta hash
  KEYS[2] events stream
  ARGV[1] '1' to check the owner, '0' for system access (no ownership check)
  ARGV[2] the caller's owner (when checked)
  ARGV[3] cursor: '0' (before the first event) or a stream id
  ARGV[4] limit (events at most)
  A job with `abandonAfterMs` records Redis's clock as its last read (one clock for every instance).

  Returns {'gone'} | {'cursor'} | {'ok', terminalEventId or '', entries, abandonAfterMs or '', traceparent or ''}
  (the job's trace context, so that readers give every event its trace id without a lookup per event).
]]
local meta = redis.call('HMGET', KEYS[1], 'name', 'owner', 'terminal', 'abandonAfterMs', 'traceparent')
if not meta[1] or (ARGV[1] == '1' and meta[2] ~= ARGV[2]) then return {'gone'} end
if meta[4] then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'readAt', now[1] * 1000 + math.floor(now[2] / 1000))
end
local start = '-'
if ARGV[3] ~= '0' then
  if #redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3]) == 0 then return {'cursor'} end
  start = '(' .. ARGV[3]
end
return {'ok', meta[3] or '', redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', ARGV[4]), meta[4] or '', meta[5] or ''}
