--[[
  BullMQ's move of a job to completed or failed, and the job's terminal event, in one script:
  BullMQ's own script of the move (taken from the installed bullmq at load time, in place of the
  @bullmq-command line below) runs first, unchanged, on its own keys and arguments; only when it
  moved the job (a reply that is not a number < 0: 0, or the next job it fetched) does finish-job
  append the terminal event, compact the stream and start the retention clock. A move BullMQ
  refuses (the worker lost the job's lock, say) writes no end: BullMQ runs the job again. Whoever
  came first still wins (finish-job is idempotent, and a cancel's end is kept).

  KEYS[1] meta hash of the job
  KEYS[2] events stream of the job
  KEYS[3] spare key of the job's slot (finish-job.lua)
  KEYS[4], ... BullMQ's keys of the move
  ARGV[1] ... ARGV[7] finish-job's arguments (finish-job.lua)
  ARGV[8], ... BullMQ's arguments of the move

  Returns {bullmqReply} when BullMQ refused the move, else {bullmqReply, finishReply} with
  finish-job's reply.
]]
-- Each part sees only its own keys and arguments, as when it runs alone.
local function bullmqCommand(KEYS, ARGV)
--- @bullmq-command
end

local function finishJob(KEYS, ARGV)
--- @include "finish-job"
end

local bullmqReply = bullmqCommand({unpack(KEYS, 4)}, {unpack(ARGV, 8)})
if type(bullmqReply) == 'number' and bullmqReply < 0 then
  return {bullmqReply}
end
return {bullmqReply, finishJob({KEYS[1], KEYS[2], KEYS[3]}, {unpack(ARGV, 1, 7)})}
