--[[
  Reads a circuit breaker's shared state.

  KEYS[1] the breaker's state hash (see breaker-admit.lua)
  KEYS[2] the breaker's failures (see breaker-record.lua)
  ARGV[1] window (ms): failures older than this are not counted
  (The time is Redis's own clock.)

  Returns {state ('closed' | 'open' | 'half-open'), recent failures, openUntil or '', probe token or ''}.
]]
local time = redis.call('TIME')
local now = time[1] * 1000 + math.floor(time[2] / 1000)
local breaker = redis.call('HMGET', KEYS[1], 'state', 'openUntil', 'probe')
local count = redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[1]), '+inf')
return {breaker[1] or 'closed', count, breaker[2] or '', breaker[3] or ''}
