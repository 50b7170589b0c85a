--[[
  BullMQ's add of a job the module enqueues, and the job's metadata, in one script: BullMQ's own
  script of the add (taken from the installed bullmq at load time, in place of the @bullmq-command
  line below) runs first, unchanged, on its own keys and arguments; only when it added the job (a
  reply that is not a number < 0) is the metadata written, so no worker ever sees the job without
  it and a refused add leaves nothing. Metadata already there is kept: an add sent again after a
  reconnect (BullMQ then finds the job there too) changes nothing.

  A job added through a JobStreamsQueue (plain `queue.add`, its id made by BullMQ's script) gets
  metadata without an owner instead, from what BullMQ stored (ARGV[1] is then 'job').

  KEYS[1] meta hash of the job; for 'job', BullMQ's first key of the add (the slot's, unused)
  KEYS[2], ... BullMQ's keys of the add
  ARGV[1] n, the number of metadata fields; or 'job', for a JobStreamsQueue's add
  ARGV[2], ... ARGV[1 + 2n] the metadata, field and value pairs; for 'job': ARGV[2] BullMQ's key
          prefix of the queue
  ARGV[2 + 2n] (for 'job': ARGV[3]), ... BullMQ's arguments of the add

  Returns {bullmqReply}.
]]
--- @include "include-ownerless-job"
-- BullMQ's part sees only its own keys and arguments, as when it runs alone.
local function bullmqCommand(KEYS, ARGV)
--- @bullmq-command
end

local fromJob = ARGV[1] == 'job'
local n = fromJob and 0 or tonumber(ARGV[1])
local bullmqReply = bullmqCommand({unpack(KEYS, 2)}, {unpack(ARGV, fromJob and 3 or 2 + 2 * n)})
if type(bullmqReply) == 'number' and bullmqReply < 0 then
  return {bullmqReply}
end
if fromJob then
  -- The job's keys are BullMQ's key of the job with the module's suffixes (its id is BullMQ's reply):
  -- in the slot of the queue's keys, as BullMQ's own keys of the job are.
  local jobKey = ARGV[2] .. bullmqReply
  local job = redis.call('HMGET', jobKey, 'name', 'opts', 'timestamp', 'processedOn', 'finishedOn')
  -- An add that found the id taken (BullMQ keeps that job and replies with its id) gives a job
  -- BullMQ already ran no metadata: it is read as any job of a plain queue is.
  if not job[4] and not job[5] and redis.call('EXISTS', jobKey .. ':jq-meta') == 0 then
    createOwnerlessJob(jobKey .. ':jq-meta', job[1] or '', maxAttemptsOf(job[2]), job[3] or 0)
  end
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2, 1 + 2 * n))
end
return {bullmqReply}
