--[[
  Included (`--- @include "include-ownerless-job"`) by the scripts that give a job added with
  plain BullMQ (or enqueued without an owner by system code) its metadata: ensure-job.lua,
  hold-job.lua, start-attempt.lua, bridge-entry.lua, with-bullmq-add.lua, and
  include-start-fetched.lua for the attempts.

  createOwnerlessJob(meta, name, maxAttempts, createdAt) writes the metadata of such a job, queued,
  without an owner: only system access reaches it.
  maxAttemptsOf(optsJson) is the attempts of BullMQ's job options (its hash's `opts`), at least 1.
]]
local function createOwnerlessJob(meta, name, maxAttempts, createdAt)
  redis.call('HSET', meta, 'name', name, 'owner', '', 'state', 'queued', 'attempt', 0,
    'maxAttempts', maxAttempts, 'createdAt', createdAt)
end

local function maxAttemptsOf(optsJson)
  local decoded, opts = pcall(cjson.decode, optsJson or '{}')
  if decoded and type(opts) == 'table' and tonumber(opts['attempts']) then
    return math.max(1, tonumber(opts['attempts']))
  end
  return 1
end
