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
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
if redis.call('HEXISTS', KEYS[1], 'terminal') == 1 then return {'final'} end
local previous = redis.call('HMGET', KEYS[1], 'run', 'attempt', 'startedId', 'count')
if previous[1] == ARGV[3] then return {'ok', tonumber(previous[2]), previous[3], tonumber(previous[4])} end
if tonumber(redis.call('HGET', KEYS[1], 'count')) + 1 >= tonumber(ARGV[2]) then return {'limit'} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'startedAt', ARGV[1])
local id = redis.call('XADD', KEYS[2], '*', 'type', 'started', 'data', '{"attempt":' .. attempt .. '}')
redis.call('HSET', KEYS[1], 'run', ARGV[3], 'startedId', id)
return {'ok', attempt, id, count}
