--[[
  One BullMQ command and the job's stream write in one script: BullMQ's own script of the command
  (taken from the installed bullmq at load time, in place of the @bullmq-command line below) runs
  first, unchanged, on its own keys and arguments; only when it succeeded (a reply >= 0) does the
  call's event go to the job's stream, with append-events' checks and idempotency (a call sent
  again after a reconnect, same writer and sequence number, is appended once).

  KEYS[1] meta hash of the job
  KEYS[2] events stream of the job
  KEYS[3], ... BullMQ's keys of the command
  ARGV[1] writer id (unique per attempt run)
  ARGV[2] sequence number of this call for the writer (1, 2, ...)
  ARGV[3] max events per job
  ARGV[4] attempt the writer belongs to
  ARGV[5] event type
  ARGV[6] event data (JSON)
  ARGV[7], ... BullMQ's arguments of the command

  Returns {bullmqReply} when BullMQ's reply is not a number >= 0 (nothing appended), else
  {bullmqReply, appendReply} with append-events' reply: {'ok', appended, lastId} | {'dup'} |
  {'final'} | {'stale'} | {'limit', appended, lastId}.
]]
-- Each part sees only its own keys and arguments, as when it runs alone.
local function bullmqCommand(KEYS, ARGV)
--- @bullmq-command
end

local function appendEvents(KEYS, ARGV)
--- @include "append-events"
end

local bullmqReply = bullmqCommand({unpack(KEYS, 3)}, {unpack(ARGV, 7)})
if type(bullmqReply) ~= 'number' or bullmqReply < 0 then
  return {bullmqReply}
end
return {bullmqReply, appendEvents({KEYS[1], KEYS[2]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]})}
