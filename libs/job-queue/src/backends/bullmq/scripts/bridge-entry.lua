--[[
  Applies one entry of BullMQ's queue events stream to a job's own stream, for attempts run by
  workers without this module (foreign workers). Idempotent and ordered per job: the job keeps the
  id of the last entry applied to it (`bridged`), and an entry at or before it changes nothing, so
  an entry read twice (a takeover, a retried call) is appended once.

  One writer per attempt: an attempt the module's own worker started (its `started` was written
  at or after the `active` entry's time, and not by this script) is that worker's to write, and
  this script leaves it alone; so is an activation the module's worker gave back unstarted (held
  back by a circuit breaker: `heldAt` at or after the `active` entry's time, see hold-job.lua).

  KEYS[1] meta hash
  KEYS[2] events stream
  KEYS[3] spare key of the job's slot, for the stream's compaction (include-keep-ended-job.lua)
  ARGV[1] entry id in BullMQ's events stream, or '' for one more event of the previous call's entry
  ARGV[2] kind: 'start' (an `active` entry) | 'event' (progress) | 'terminal' (completed, failed)
          | 'requeue' (back to waiting or delayed after an attempt) | 'gap' (entries were lost)
  ARGV[3] event type (terminal: the final state too), ARGV[4] event data (JSON)
  ARGV[5] now (epoch ms), ARGV[6] retention (ms), ARGV[7] max events per job
  ARGV[8] start: time (ms) of the `active` entry; terminal: the meta field of the outcome (result | error)
  ARGV[9] terminal: the outcome (JSON)
  ARGV[10] job name, ARGV[11] max attempts, ARGV[12] created at: to create the metadata of a job
          seen for the first time ('start' and 'gap' only; empty name: do not create)

  Returns {'ok', eventId} | {'dup'} | {'module'} (another writer's attempt) | {'final'} | {'gone'}
  | {'full'} (the per-job cap is reached: nothing appended but the terminal event).
]]
--- @include "include-ownerless-job"
--- @include "include-keep-ended-job"

local function after(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams > bms end
  return tonumber(aseq) > tonumber(bseq)
end

local kind = ARGV[2]
if redis.call('HEXISTS', KEYS[1], 'name') == 0 then
  if (kind ~= 'start' and kind ~= 'gap') or ARGV[10] == '' then return {'gone'} end
  createOwnerlessJob(KEYS[1], ARGV[10], ARGV[11], ARGV[12])
end
local meta = redis.call('HMGET', KEYS[1], 'terminal', 'bridged', 'attempt', 'foreign', 'startedId', 'heldAt')
-- A retry that finds its write done still writes (the same value): replica acks then cover the first write.
if meta[1] then
  redis.call('HSET', KEYS[1], 'terminal', meta[1])
  return {'final'}
end
-- An empty entry id continues the previous call's entry (a gap's recovery writes several events for one).
if ARGV[1] ~= '' then
  if meta[2] and not after(ARGV[1], meta[2]) then
    redis.call('HSET', KEYS[1], 'bridged', meta[2])
    return {'dup'}
  end
  redis.call('HSET', KEYS[1], 'bridged', ARGV[1])
end
local attempt = tonumber(meta[3])
local ours = meta[4] ~= false and tonumber(meta[4]) == attempt and attempt > 0
-- The stream's length is the job's event count (nothing but the job's end trims it).
local count = redis.call('XLEN', KEYS[2])
local max = tonumber(ARGV[7])

if kind == 'start' then
  -- An attempt started at or after this `active` is this one: by the module's own worker (its
  -- own to write), or by this script already (e.g. from a gap's recovery).
  if meta[5] and tonumber(string.match(meta[5], '^(%d+)-')) >= tonumber(ARGV[8]) then
    if ours then
      redis.call('HSET', KEYS[1], 'startedId', meta[5])
      return {'dup'}
    end
    return {'module'}
  end
  if meta[6] and tonumber(meta[6]) >= tonumber(ARGV[8]) then return {'module'} end
  if count + 2 > max then return {'full'} end
  attempt = attempt + 1
  local id = redis.call('XADD', KEYS[2], '*', 'type', 'started', 'data', '{"attempt":' .. attempt .. '}')
  redis.call('HSET', KEYS[1], 'attempt', attempt, 'foreign', attempt, 'state', 'running',
    'startedAt', ARGV[5], 'startedId', id)
  -- Started, the job is whole: no provisional TTL (an earlier version's enqueue gave one) is left on it.
  redis.call('PERSIST', KEYS[1])
  return {'ok', id}
end

if not ours then return {'module'} end

if kind == 'requeue' then
  redis.call('HSET', KEYS[1], 'state', 'queued')
  return {'ok', ''}
end

if kind == 'event' or kind == 'gap' then
  if count + 2 > max then return {'full'} end
  local id = redis.call('XADD', KEYS[2], '*', 'type', ARGV[3], 'data', ARGV[4])
  return {'ok', id}
end

-- terminal (the slot kept free for it is this one)
local id = redis.call('XADD', KEYS[2], '*', 'type', ARGV[3], 'data', ARGV[4])
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'terminal', id, 'finishedAt', ARGV[5], ARGV[8], ARGV[9])
keepEndedJob(KEYS[1], KEYS[2], KEYS[3], ARGV[6])
return {'ok', id}
