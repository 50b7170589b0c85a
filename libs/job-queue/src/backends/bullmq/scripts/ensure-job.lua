--[[
  Gives a processor job that BullMQ has but this library has not seen yet (added with plain
  BullMQ, not started) its metadata, without an owner, so that system-level reads can follow it.

  KEYS[1] meta hash
  KEYS[2] BullMQ's hash of the job (in the same slot only without Redis Cluster)
  ARGV[1] now (epoch ms), used when BullMQ's hash has no timestamp

  Returns 1 when the job exists (now or before), 0 when neither exists or BullMQ already finished it.
]]
if redis.call('HEXISTS', KEYS[1], 'name') == 1 then return 1 end
-- Ids such as 'wait' or 'events' name BullMQ's own lists and streams, not jobs.
if redis.call('TYPE', KEYS[2])['ok'] ~= 'hash' then return 0 end
local job = redis.call('HMGET', KEYS[2], 'name', 'opts', 'timestamp', 'finishedOn')
if not job[1] then return 0 end
-- A job BullMQ finished whose stream expired (or that was never bridged) has no events to follow.
if job[4] then return 0 end
local attempts = 1
local ok, opts = pcall(cjson.decode, job[2] or '{}')
if ok and type(opts) == 'table' and tonumber(opts['attempts']) and tonumber(opts['attempts']) > 1 then
  attempts = tonumber(opts['attempts'])
end
redis.call('HSET', KEYS[1], 'name', job[1], 'owner', '', 'state', 'queued', 'attempt', 0,
  'maxAttempts', attempts, 'createdAt', job[3] or ARGV[1], 'count', 0)
return 1
