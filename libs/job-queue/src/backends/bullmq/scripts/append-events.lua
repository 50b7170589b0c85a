--[[
  Appends one batch of handler events to a job's stream (see include-append-events.lua).

  KEYS[1] meta hash
  KEYS[2] events stream
  ARGV[1] writer id (unique per attempt run)
  ARGV[2] batch sequence number of this writer (1, 2, ...)
  ARGV[3] max events per job
  ARGV[4] attempt the writer belongs to
  ARGV[5], ARGV[6], ... type, data pairs

  Returns {'ok', appended, lastId} | {'dup'} | {'final'} | {'stale'} | {'limit', appended, lastId}.
]]
--- @include "include-append-events"
return appendEvents(KEYS[1], KEYS[2], ARGV, 0)
