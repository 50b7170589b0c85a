--[[
  Takes back the metadata of a job whose enqueue failed (BullMQ's add was refused, or its reply was
  lost), unless a worker started the job meanwhile (an add whose reply was lost can still have
  reached BullMQ): a started job is whole and runs to its end.

  KEYS[1] meta hash

  Returns 'withdrawn' | 'started' | 'gone'.
]]
local meta = redis.call('HMGET', KEYS[1], 'name', 'attempt')
if not meta[1] then return 'gone' end
if meta[2] ~= '0' then return 'started' end
redis.call('DEL', KEYS[1])
return 'withdrawn'
