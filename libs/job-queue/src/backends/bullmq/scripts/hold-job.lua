--[[
  Records that a worker of this module took a job from BullMQ and gave it back without starting it
  (a circuit breaker of its name is open): the job stays `queued`, and the foreign-worker bridge
  does not take BullMQ's `active` entry of that hand-back for an attempt of a foreign worker (see
  bridge-entry.lua, which leaves an activation at or before `heldAt` alone).

  KEYS[1] meta hash
  ARGV[1] '1' to create the metadata of a job that has none (a processor job added with plain
          BullMQ, without an owner), '0' to treat a missing one as gone
  ARGV[2] job name, ARGV[3] max attempts, ARGV[4] created at (epoch ms): for that creation
  (The time is Redis's own clock, which BullMQ's events stream ids use too.)

  Returns 'ok' | 'final' | 'gone'.
]]
--- @include "include-ownerless-job"
if redis.call('HEXISTS', KEYS[1], 'name') == 0 then
  if ARGV[1] ~= '1' then return 'gone' end
  createOwnerlessJob(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
end
if redis.call('HEXISTS', KEYS[1], 'terminal') == 1 then return 'final' end
local time = redis.call('TIME')
redis.call('HSET', KEYS[1], 'heldAt', time[1] * 1000 + math.floor(time[2] / 1000))
return 'ok'
