--[[
  Included (`--- @include "include-keep-ended-job"`) by the scripts that append a job's terminal
  event: finish-job.lua, bridge-entry.lua, abandon-unread.lua. Nothing is appended after it.

  keepEndedJob(meta, stream, spare, retentionMs) compacts the stream and starts the retention
  clock of both keys. Redis (6.2 on) allocates a stream's last node at `stream-node-max-bytes`
  (4 KB by default) and shrinks it only once the node is full, so a job with a few events would
  hold about 4.3 KB for its whole retention. COPY writes every node at its used size (about 0.4 KB
  for two events), RENAME puts the copy in place: the same entries and ids, and a reader blocked on
  the stream is served from the copy. `spare` is a key of the job's slot that holds nothing else.
  Streams of more than 100 events keep theirs: the slack is small beside them, and a copy would
  hold Redis longer. Before Redis 6.2 there is no COPY and nothing to compact (pcall).
]]
local function keepEndedJob(meta, stream, spare, retentionMs)
  if redis.call('XLEN', stream) <= 100 and redis.pcall('COPY', stream, spare, 'REPLACE') == 1 then
    redis.call('RENAME', spare, stream)
  end
  redis.call('PEXPIRE', meta, retentionMs)
  redis.call('PEXPIRE', stream, retentionMs)
end
