--[[
  Decides whether a worker may start a job of a name guarded by a circuit breaker, and claims the
  half-open probe atomically (one job across every worker). A closed breaker has no state hash.

  KEYS[1] the breaker's state hash (state 'open' | 'half-open', openUntil, probe, probeUntil)
  ARGV[1] the job's token (`<queue>:<jobId>`): the probe's holder; the same job asking again
          (a retried call, a stalled job run again) keeps or renews its probe
  ARGV[2] probe lease (ms): a probe whose holder neither renews nor reports within it is given
          to the next job (its worker died)
  ARGV[3] cool-down (ms): how long a job held back by a running probe waits at most before asking
          again, and at least 1 s: every hold-back costs BullMQ a move and entries in its events
          stream, so a short cool-down must not make held jobs spin
  (The time is Redis's own clock, shared by every worker.)

  Returns {'pass'} (closed) | {'probe'} (this job is the probe) | {'wait', retryAt, openUntil or ''}.
]]
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local breaker = redis.call('HMGET', KEYS[1], 'state', 'openUntil', 'probe', 'probeUntil')
if not breaker[1] then return {'pass'} end
local leaseMs = tonumber(ARGV[2])
if breaker[1] == 'open' then
  local openUntil = tonumber(breaker[2])
  if now < openUntil then return {'wait', openUntil, openUntil} end
  redis.call('HSET', KEYS[1], 'state', 'half-open', 'probe', ARGV[1], 'probeUntil', now + leaseMs)
  return {'probe'}
end
local probeUntil = tonumber(breaker[4])
if breaker[3] == ARGV[1] or now >= probeUntil then
  redis.call('HSET', KEYS[1], 'probe', ARGV[1], 'probeUntil', now + leaseMs)
  return {'probe'}
end
return {'wait', math.max(now + 1000, math.min(probeUntil, now + tonumber(ARGV[3]))), ''}
