--[[
  Confirms the enqueue of a job once BullMQ has it: its metadata loses the provisional TTL that
  create-job.lua gave it. A job that ended meanwhile (a fast worker) keeps the retention TTL its
  end set: before its terminal event, a job's metadata has a TTL only while it is provisional.

  KEYS[1] meta hash

  Returns 1, or 0 when the metadata is gone (its provisional TTL ran out before the confirmation).
]]
local meta = redis.call('HMGET', KEYS[1], 'name', 'terminal')
if not meta[1] then return 0 end
if not meta[2] then redis.call('PERSIST', KEYS[1]) end
return 1
