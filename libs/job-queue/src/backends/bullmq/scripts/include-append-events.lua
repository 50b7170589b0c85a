--[[
  Included (`--- @include "include-append-events"`) by append-events.lua and by the scripts that
  run BullMQ's updateProgress/addLog with the call's event (with-bullmq-command.lua).

  appendEvents(meta, stream, args, at) appends one batch of events to the job's stream `stream`
  (its metadata hash `meta`), in order, idempotently: a batch sent again after a timeout or a
  reconnect (same writer and sequence number) is not appended twice. Nothing is appended after the
  terminal event, nor by a writer whose attempt was superseded, nor past the per-job cap (one slot
  stays free for the terminal event). Its arguments are read from `args` in place, after index `at`:
    args[at + 1] writer id (unique per attempt run)
    args[at + 2] batch sequence number of this writer (1, 2, ...)
    args[at + 3] max events per job
    args[at + 4] attempt the writer belongs to
    args[at + 5], args[at + 6], ... type, data pairs, to the end of `args`

  Returns {'ok', appended, lastId} | {'dup'} | {'final'} | {'stale'} | {'limit', appended, lastId}.
]]
local function appendEvents(meta, stream, args, at)
  local state = redis.call('HMGET', meta, 'writer', 'wseq', 'attempt', 'terminal')
  -- A retry that finds its write done still writes (the same value): replica acks then cover the first write.
  if state[4] then
    redis.call('HSET', meta, 'terminal', state[4])
    return {'final'}
  end
  local writer, seq = args[at + 1], args[at + 2]
  if state[1] == writer and tonumber(state[2]) >= tonumber(seq) then
    redis.call('HSET', meta, 'wseq', state[2])
    return {'dup'}
  end
  if state[3] ~= args[at + 4] then return {'stale'} end
  -- The stream's length is the job's event count (nothing but the job's end trims it).
  local count = redis.call('XLEN', stream)
  local n = (#args - at - 4) / 2
  local fit = math.max(0, math.min(n, tonumber(args[at + 3]) - 1 - count))
  local last = ''
  for i = at + 5, at + 3 + 2 * fit, 2 do
    last = redis.call('XADD', stream, '*', 'type', args[i], 'data', args[i + 1])
  end
  -- The writer is written once per attempt run (each field written costs Redis a lookup).
  if state[1] == writer then
    redis.call('HSET', meta, 'wseq', seq)
  else
    redis.call('HSET', meta, 'writer', writer, 'wseq', seq)
  end
  if fit < n then return {'limit', fit, last} end
  return {'ok', fit, last}
end
