--[[
  Gives a processor job that BullMQ has but this library has not seen yet (added with plain
  BullMQ, not started) its metadata, without an owner, so that system-level reads can follow it.
  BullMQ's hash of the job is read by the caller just before (on Redis Cluster it lives in another
  slot than the job's own keys, so one script cannot read both).

  KEYS[1] meta hash
  ARGV[1] the job's name, ARGV[2] its attempts, ARGV[3] its creation time (epoch ms), as BullMQ has them

  Returns 1 (the job has metadata, now or before).
]]
--- @include "include-ownerless-job"
if redis.call('HEXISTS', KEYS[1], 'name') == 1 then return 1 end
createOwnerlessJob(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
