--[[
  Appends one batch of handler events, in order, idempotently: a batch retried after a timeout or a
  reconnect (same writer and sequence number) is not appended twice. Nothing is appended after the
  terminal event, nor by a writer whose attempt was superseded, nor past the per-job cap (one slot
  stays free for the terminal event).

  KEYS[1] meta hash
  KEYS[2] events stream
  ARGV[1] writer id (unique per attempt run)
  ARGV[2] batch sequence number of this writer (1, 2, ...)
  ARGV[3] max events per job
  ARGV[4] attempt the writer belongs to
  ARGV[5], ARGV[6], ... type, data pairs

  Returns {'ok', appended, lastId} | {'dup'} | {'final'} | {'stale'} | {'limit', appended, lastId}.
]]
local meta = KEYS[1]
local state = redis.call('HMGET', meta, 'writer', 'wseq', 'attempt', 'count', 'terminal')
-- A retry that finds its write done still writes (the same value): replica acks then cover the first write.
if state[5] then
  redis.call('HSET', meta, 'terminal', state[5])
  return {'final'}
end
if state[1] == ARGV[1] and tonumber(state[2]) >= tonumber(ARGV[2]) then
  redis.call('HSET', meta, 'wseq', state[2])
  return {'dup'}
end
if state[3] ~= ARGV[4] then return {'stale'} end
local count = tonumber(state[4])
local n = (#ARGV - 4) / 2
local fit = math.max(0, math.min(n, tonumber(ARGV[3]) - 1 - count))
local last = ''
for i = 0, fit - 1 do
  last = redis.call('XADD', KEYS[2], '*', 'type', ARGV[5 + 2 * i], 'data', ARGV[6 + 2 * i])
end
redis.call('HSET', meta, 'writer', ARGV[1], 'wseq', ARGV[2], 'count', count + fit)
if fit < n then return {'limit', fit, last} end
return {'ok', fit, last}
