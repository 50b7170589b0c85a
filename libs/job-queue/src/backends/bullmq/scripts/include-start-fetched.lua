--[[
  Included (`--- @include "include-start-fetched"`) by the scripts that run BullMQ's command that
  moves a job to active (with-bullmq-fetch.lua, with-bullmq-finish.lua for the next job): starts
  the attempt of the job BullMQ just gave the worker, in the same script, as start-attempt.lua
  does alone (the cancel check, the attempt counter, `started`, the cap). The job's keys are BullMQ's
  key of the job with the module's suffixes, in the slot of the queue's keys.

  startFetched(jobKey, args, at) reads its arguments from `args` in place, after index `at`:
    args[at + 1] now (epoch ms)
    args[at + 2] max events per job
    args[at + 3] run id (unique per command sent; a command sent again starts the attempt once)
    args[at + 4] '1' to create the metadata of a job that has none (a processor's queue), '0' not to
    args[at + 5] 'only' when the job names in args[at + 6] have a circuit breaker, 'except' when
            every name but those has one
    args[at + 6] job names (JSON array)

  Returns start-attempt's reply, or {'unstarted'} when the job's name has a circuit breaker: the
  worker then admits the job through its breaker and starts the attempt itself.
]]
--- @include "include-ownerless-job"
local function startAttempt(KEYS, ARGV)
--- @include "start-attempt"
end

local function startFetched(jobKey, args, at)
  local job = redis.call('HMGET', jobKey, 'name', 'opts', 'timestamp')
  local name = job[1] or ''
  local listed = false
  if args[at + 6] ~= '[]' then
    for _, breakerName in ipairs(cjson.decode(args[at + 6])) do
      if breakerName == name then listed = true end
    end
  end
  if (args[at + 5] == 'only') == listed then return {'unstarted'} end
  return startAttempt({jobKey .. ':jq-meta', jobKey .. ':jq-events'},
    {args[at + 1], args[at + 2], args[at + 3], args[at + 4], name, maxAttemptsOf(job[2]), job[3] or args[at + 1]})
end
