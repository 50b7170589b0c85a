--[[
  Starts an attempt: bumps the attempt counter and appends `started`, unless the job already ended
  (a cancel that came before the worker picked the job wins) or expired. A started job's metadata
  has no TTL (an enqueue of an earlier version of the module gave it a provisional one): it never
  expires under a running job.

  KEYS[1] meta hash
  KEYS[2] events stream
  ARGV[1] now (epoch ms)
  ARGV[2] max events per job: a retry whose `started` would leave no slot for the terminal event
          does not start ('limit'), the caller fails the job instead
  ARGV[3] run id, unique per attempt run: a call retried after its reply was lost returns the
          first call's answer instead of starting the attempt twice
  ARGV[4] '1' to create the metadata of a job that has none (a processor job added with plain
          BullMQ, without an owner), '0' to treat a missing one as gone (its enqueue was never
          confirmed, or its retention ran out)
  ARGV[5] job name, ARGV[6] max attempts, ARGV[7] created at (epoch ms): for that creation

  Returns {'ok', attempt, eventId, eventCount, abandonAfterMs or '', traceparent or '', tracestate or ''}
    | {'final', state, result or ''} | {'gone'} | {'limit'}.
]]
--- @include "include-ownerless-job"
-- Every field the start reads, in one read (each HMGET/HEXISTS is a lookup of its own in the hash).
local function readMeta()
  return redis.call('HMGET', KEYS[1], 'name', 'terminal', 'run', 'attempt', 'startedId', 'state', 'result',
    'owner', 'createdAt', 'abandonAfterMs', 'traceparent', 'tracestate')
end
local meta = readMeta()
if not meta[1] then
  if ARGV[4] ~= '1' then return {'gone'} end
  createOwnerlessJob(KEYS[1], ARGV[5], ARGV[6], ARGV[7])
  meta = readMeta()
elseif meta[2] and ARGV[4] == '1' and meta[8] == '' and meta[9] ~= ARGV[7] then
  -- A job added without an owner whose id BullMQ was given again (a custom id re-added after the
  -- first job was removed): the ended stream is the earlier job's, this one starts afresh.
  redis.call('DEL', KEYS[1], KEYS[2])
  createOwnerlessJob(KEYS[1], ARGV[5], ARGV[6], ARGV[7])
  meta = readMeta()
end
-- A retry that finds its write done still writes (the same value): replica acks then cover the first write.
if meta[2] then
  redis.call('HSET', KEYS[1], 'terminal', meta[2])
  return {'final', meta[6], meta[7] or ''}
end
redis.call('PERSIST', KEYS[1])
local abandonAfterMs = meta[10] or ''
local traceparent = meta[11] or ''
local tracestate = meta[12] or ''
-- The stream's length is the job's event count (nothing but the job's end trims it).
local count = redis.call('XLEN', KEYS[2])
if meta[3] == ARGV[3] then
  redis.call('HSET', KEYS[1], 'run', ARGV[3])
  return {'ok', tonumber(meta[4]), meta[5], count, abandonAfterMs, traceparent, tracestate}
end
count = count + 1
if count >= tonumber(ARGV[2]) then return {'limit'} end
local attempt = tonumber(meta[4]) + 1
local id = redis.call('XADD', KEYS[2], '*', 'type', 'started', 'data', '{"attempt":' .. attempt .. '}')
redis.call('HSET', KEYS[1], 'attempt', attempt, 'state', 'running', 'startedAt', ARGV[1],
  'run', ARGV[3], 'startedId', id)
return {'ok', attempt, id, count, abandonAfterMs, traceparent, tracestate}
