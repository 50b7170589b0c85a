--[[
  Starts an attempt: bumps the attempt counter and appends `started`, unless the job already ended
  (a cancel that came before the worker picked the job wins) or expired.

  KEYS[1] meta hash
  KEYS[2] events stream
  ARGV[1] now (epoch ms)
  ARGV[2] max events per job: a retry whose `started` would leave no slot for the terminal event
          does not start ('limit'), the caller fails the job instead
  ARGV[3] run id, unique per attempt run: a call retried after its reply was lost returns the
          first call's answer instead of starting the attempt twice

  Returns {'ok', attempt, eventId, eventCount} | {'final'} | {'gone'} | {'limit'}.
]]
local meta = redis.call('HMGET', KEYS[1], 'owner', 'terminal', 'run', 'attempt', 'startedId', 'count')
if not meta[1] then return {'gone'} end
if meta[2] then return {'final'} end
if meta[3] == ARGV[3] then return {'ok', tonumber(meta[4]), meta[5], tonumber(meta[6])} end
local count = tonumber(meta[6]) + 1
if count >= tonumber(ARGV[2]) then return {'limit'} end
local attempt = tonumber(meta[4]) + 1
local id = redis.call('XADD', KEYS[2], '*', 'type', 'started', 'data', '{"attempt":' .. attempt .. '}')
redis.call('HSET', KEYS[1], 'attempt', attempt, 'count', count, 'state', 'running', 'startedAt', ARGV[1],
  'run', ARGV[3], 'startedId', id)
return {'ok', attempt, id, count}
