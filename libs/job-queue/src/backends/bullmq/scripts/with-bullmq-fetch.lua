--[[
  BullMQ's move of the next job to active, and the start of that job's attempt, in one script:
  BullMQ's own script (taken from the installed bullmq at load time, in place of the
  @bullmq-command line below) runs first, unchanged, on its own keys and arguments; when it gave
  the worker a job, the attempt starts as start-attempt.lua starts it (include-start-fetched.lua):
  no reader ever sees the job active without its `started`, and a job cancelled before this never
  reaches the processor (the worker finds it final).

  BullMQ's keys and arguments come first, where its script reads them, and the module's follow
  (K and A: how many keys and arguments BullMQ's command was given, the rest being the module's):
  KEYS BullMQ's keys of the command
  ARGV[1] ... ARGV[A] BullMQ's arguments of the command (ARGV[1]: BullMQ's key prefix of the queue)
  ARGV[A + 1] ... ARGV[A + 6] startFetched's arguments (include-start-fetched.lua)

  Returns {bullmqReply} when BullMQ gave no job, else {bullmqReply, startReply}.
]]
local A = #ARGV - 6
local function bullmqCommand()
--- @bullmq-command
end

--- @include "include-start-fetched"

local bullmqReply = bullmqCommand()
local jobId = type(bullmqReply) == 'table' and bullmqReply[2]
if not jobId or jobId == 0 or jobId == '0' then
  return {bullmqReply}
end
-- BullMQ's move is done and stays: a start that fails leaves the worker to start the attempt by a
-- call of its own, instead of failing BullMQ's command.
local ok, startReply = pcall(startFetched, ARGV[1] .. jobId, ARGV, A)
return {bullmqReply, ok and startReply or {'unstarted'}}
