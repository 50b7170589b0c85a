--[[
  BullMQ's move of a job to completed or failed, the job's terminal event, and the start of the
  next job's attempt, in one script: BullMQ's own script of the move (taken from the installed
  bullmq at load time, in place of the @bullmq-command line below) runs first, unchanged, on its
  own keys and arguments. Only when it moved the job (a reply that is not a number < 0: 0, or the
  next job it fetched) for the run whose end this is (ARGV[A + 1], its lock token: another run of the
  same job in the worker may send its own move meanwhile) does finish-job append the terminal
  event, compact the stream and start the retention clock. A move BullMQ refuses (the worker lost
  the job's lock, say) writes no end: BullMQ runs the job again. Whoever came first still wins (finish-job is
  idempotent, and a cancel's end is kept). When BullMQ fetched the next job, its attempt starts as
  start-attempt.lua starts it (include-start-fetched.lua; when asked: ARGV[A + 9] not empty).

  BullMQ's keys and arguments come first, where its script reads them, and the module's follow
  (K and A: how many keys and arguments BullMQ's command was given, the rest being the module's):
  KEYS[1] ... KEYS[K] BullMQ's keys of the move
  KEYS[K + 1] meta hash of the job
  KEYS[K + 2] events stream of the job
  KEYS[K + 3] spare key of the job's slot (finish-job.lua)
  ARGV[1] ... ARGV[A] BullMQ's arguments of the move (ARGV[5]: the target, completed or failed;
          ARGV[7]: BullMQ's key prefix of the queue; ARGV[8]: its options, with the lock token of
          the run moving the job)
  ARGV[A + 1] the lock token of the run whose terminal event ARGV[A + 2 .. A + 8] is, '*' for the
          run sending this move (a plain Worker's: the end is made from this move's own outcome),
          or '' for none
  ARGV[A + 2] ... ARGV[A + 8] finish-job's arguments (finish-job.lua)
  ARGV[A + 9] ... ARGV[A + 14] startFetched's arguments (include-start-fetched.lua), or
          ARGV[A + 9] = ''

  Returns {bullmqReply, finishReply or 0, startReply or 0}: 0 for a part that did not run;
  finishReply {'refused'} when BullMQ refused the move of the end's run or records another
  outcome, {'error', message} when finish-job failed; startReply {'unstarted'} when the start
  failed (the worker then starts the attempt by a call of its own).
]]
local K, A = #KEYS - 3, #ARGV - 14
local function bullmqCommand()
--- @bullmq-command
end

local function finishJob(KEYS, ARGV)
--- @include "finish-job"
end

--- @include "include-start-fetched"

local bullmqReply = bullmqCommand()
-- The move of the run whose end this is: BullMQ's answer to it settles that end either way.
local token = ARGV[A + 1]
local ownRun = token == '*' or (token ~= '' and cmsgpack.unpack(ARGV[8])['token'] == token)
if type(bullmqReply) == 'number' and bullmqReply < 0 then
  return {bullmqReply, ownRun and {'refused'} or 0, 0}
end
-- BullMQ's part is done and stays: an error in the module's parts is returned, never raised, so
-- that BullMQ gets its reply (the worker then writes that part by a call of its own).
local finishReply = 0
if ownRun then
  if ARGV[A + 2] ~= ARGV[5] then
    -- BullMQ records another outcome than the end's (a completion it refused, then failed the
    -- job, say): that end is not the job's.
    finishReply = {'refused'}
  else
    local ok, reply = pcall(finishJob, {KEYS[K + 1], KEYS[K + 2], KEYS[K + 3]}, {unpack(ARGV, A + 2, A + 8)})
    finishReply = ok and reply or {'error', tostring(reply)}
  end
end
local startReply = 0
local jobId = type(bullmqReply) == 'table' and bullmqReply[2]
if ARGV[A + 9] ~= '' and jobId and jobId ~= 0 and jobId ~= '0' then
  local ok, reply = pcall(startFetched, ARGV[7] .. jobId, ARGV, A + 8)
  startReply = ok and reply or {'unstarted'}
end
return {bullmqReply, finishReply, startReply}
