--[[
  One BullMQ command and the job's stream write in one script: BullMQ's own script of the command
  (taken from the installed bullmq at load time, in place of the @bullmq-command line below) runs
  first, unchanged, on its own keys and arguments; only when it succeeded (a reply >= 0) does the
  call's event go to the job's stream, with append-events' checks and idempotency (a call sent
  again after a reconnect, same writer and sequence number, is appended once).

  BullMQ's keys and arguments come first, where its script reads them, and the module's follow
  (K and A: how many keys and arguments BullMQ's command was given, the rest being the module's):
  KEYS[1] ... KEYS[K] BullMQ's keys of the command
  KEYS[K + 1] meta hash of the job
  KEYS[K + 2] events stream of the job
  ARGV[1] ... ARGV[A] BullMQ's arguments of the command
  ARGV[A + 1] writer id (unique per attempt run)
  ARGV[A + 2] sequence number of this call for the writer (1, 2, ...)
  ARGV[A + 3] max events per job
  ARGV[A + 4] attempt the writer belongs to
  ARGV[A + 5] event type
  ARGV[A + 6] event data (JSON)

  Returns BullMQ's reply alone when it is not a number >= 0 (nothing appended) or when the event
  went in (the common case: a flat reply costs Redis less than a nested one), else
  {bullmqReply, appendReply} with append-events' reply: {'dup'} | {'final'} | {'stale'} |
  {'limit', appended, lastId}.
]]
local K, A = #KEYS - 2, #ARGV - 6
local function bullmqCommand()
--- @bullmq-command
end

--- @include "include-append-events"

local bullmqReply = bullmqCommand()
if type(bullmqReply) ~= 'number' or bullmqReply < 0 then
  return bullmqReply
end
local appendReply = appendEvents(KEYS[K + 1], KEYS[K + 2], ARGV, A)
if appendReply[1] == 'ok' then return bullmqReply end
return {bullmqReply, appendReply}
