--[[
  BullMQ's add of a job the module enqueues, and the job's metadata, in one script: BullMQ's own
  script of the add (taken from the installed bullmq at load time, in place of the @bullmq-command
  line below) runs first, unchanged, on its own keys and arguments; only when it added the job (a
  reply that is not a number < 0) is the metadata written, so no worker ever sees the job without
  it and a refused add leaves nothing. Metadata already there is kept: an add sent again after a
  reconnect (BullMQ then finds the job there too) changes nothing.

  KEYS[1] meta hash of the job
  KEYS[2], ... BullMQ's keys of the add
  ARGV[1] n, the number of metadata fields
  ARGV[2], ... ARGV[1 + 2n] the metadata, field and value pairs
  ARGV[2 + 2n], ... BullMQ's arguments of the add

  Returns {bullmqReply}.
]]
-- BullMQ's part sees only its own keys and arguments, as when it runs alone.
local function bullmqCommand(KEYS, ARGV)
--- @bullmq-command
end

local n = tonumber(ARGV[1])
local bullmqReply = bullmqCommand({unpack(KEYS, 2)}, {unpack(ARGV, 2 + 2 * n)})
if type(bullmqReply) == 'number' and bullmqReply < 0 then
  return {bullmqReply}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2, 1 + 2 * n))
end
return {bullmqReply}
