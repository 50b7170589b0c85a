--[[
  BullMQ's add of a job the module enqueues, and the job's metadata, in one script: BullMQ's own
  script of the add (taken from the installed bullmq at load time, in place of the @bullmq-command
  line below) runs first, unchanged, on its own keys and arguments; only when it added the job (a
  reply that is not a number < 0) is the metadata written, so no worker ever sees the job without
  it and a refused add leaves nothing. Metadata already there is kept: an add sent again after a
  reconnect (BullMQ then finds the job there too) changes nothing.

  A job added through a JobStreamsQueue (plain `queue.add`, its id made by BullMQ's script) gets
  metadata without an owner instead, from what BullMQ stored (the last argument is then 'job').

  BullMQ's keys and arguments come first, where its script reads them, and the module's follow
  (K and A: how many keys and arguments BullMQ's command was given, the rest being the module's):
  KEYS[1] ... KEYS[K] BullMQ's keys of the add
  KEYS[K + 1] meta hash of the job; for 'job', BullMQ's first key of the add (the slot's, unused)
  ARGV[1] ... ARGV[A] BullMQ's arguments of the add
  ARGV[A + 1], ... ARGV[A + 2n] the metadata, field and value pairs, then ARGV[A + 2n + 1] = n,
          the number of fields; or, for a JobStreamsQueue's add, ARGV[A + 1] BullMQ's key prefix
          of the queue, then ARGV[A + 2] = 'job'

  Returns {bullmqReply}.
]]
--- @include "include-ownerless-job"
local K = #KEYS - 1
local fromJob = ARGV[#ARGV] == 'job'
local n = fromJob and 0 or tonumber(ARGV[#ARGV])
local A = #ARGV - (fromJob and 2 or 1 + 2 * n)
local function bullmqCommand()
--- @bullmq-command
end

local bullmqReply = bullmqCommand()
if type(bullmqReply) == 'number' and bullmqReply < 0 then
  return {bullmqReply}
end
if fromJob then
  -- The job's keys are BullMQ's key of the job with the module's suffixes (its id is BullMQ's reply):
  -- in the slot of the queue's keys, as BullMQ's own keys of the job are.
  local jobKey = ARGV[A + 1] .. bullmqReply
  local job = redis.call('HMGET', jobKey, 'name', 'opts', 'timestamp', 'processedOn', 'finishedOn')
  -- An add that found the id taken (BullMQ keeps that job and replies with its id) gives a job
  -- BullMQ already ran no metadata: it is read as any job of a plain queue is.
  if not job[4] and not job[5] and redis.call('EXISTS', jobKey .. ':jq-meta') == 0 then
    createOwnerlessJob(jobKey .. ':jq-meta', job[1] or '', maxAttemptsOf(job[2]), job[3] or 0)
  end
elseif redis.call('EXISTS', KEYS[K + 1]) == 0 then
  redis.call('HSET', KEYS[K + 1], unpack(ARGV, A + 1, A + 2 * n))
end
return {bullmqReply}
