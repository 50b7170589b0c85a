--[[
  Records how an attempt of a job guarded by a circuit breaker ended. A failure counts in the
  breaker's sliding window; the `failures`-th within the window opens a closed breaker. The
  probe's success closes the breaker (failures reset), its failure opens it for another cool-down,
  its release (cancelled, handed back) lets the next job probe at once. Idempotent per attempt: a
  call retried after its reply was lost does not count twice.

  KEYS[1] the breaker's state hash (see breaker-admit.lua)
  KEYS[2] the breaker's failures: sorted set of attempt keys scored by failure time
  ARGV[1] 'success' | 'failure' | 'release'
  ARGV[2] the job's token (`<queue>:<jobId>`)
  ARGV[3] the attempt's key (`<queue>:<jobId>:<attempt>`), unique per attempt
  ARGV[4] failures that open the breaker
  ARGV[5] window (ms)
  ARGV[6] cool-down (ms)
  (The time is Redis's own clock, shared by every worker.)

  Returns {state ('closed' | 'open' | 'half-open'), recent failures, openUntil or ''}.
]]
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local breaker = redis.call('HMGET', KEYS[1], 'state', 'openUntil', 'probe')
local state = breaker[1] or 'closed'
local outcome = ARGV[1]
local windowMs = tonumber(ARGV[5])

local function failed()
  redis.call('ZADD', KEYS[2], 'NX', now, ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - windowMs)
  redis.call('PEXPIRE', KEYS[2], windowMs)
  return redis.call('ZCARD', KEYS[2])
end

if state == 'half-open' and breaker[3] == ARGV[2] then
  if outcome == 'success' then
    redis.call('DEL', KEYS[1], KEYS[2])
    return {'closed', 0, ''}
  end
  local openUntil = now
  local count = redis.call('ZCOUNT', KEYS[2], now - windowMs, '+inf')
  if outcome == 'failure' then
    openUntil = now + tonumber(ARGV[6])
    count = failed()
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'openUntil', openUntil)
  redis.call('HDEL', KEYS[1], 'probe', 'probeUntil')
  return {'open', count, openUntil}
end
if outcome ~= 'failure' then
  return {state, redis.call('ZCOUNT', KEYS[2], now - windowMs, '+inf'), breaker[2] or ''}
end
local count = failed()
if state == 'closed' and count >= tonumber(ARGV[4]) then
  local openUntil = now + tonumber(ARGV[6])
  redis.call('HSET', KEYS[1], 'state', 'open', 'openUntil', openUntil)
  return {'open', count, openUntil}
end
return {state, count, breaker[2] or ''}
