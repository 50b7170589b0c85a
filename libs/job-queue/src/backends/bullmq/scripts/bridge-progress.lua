--[[
  Applies consecutive `progress` entries of BullMQ's queue events stream to one job's stream, in
  one call (bridge-entry.lua applies one entry of any kind): the same rules, entry by entry. An
  entry at or before the last one applied to the job (`bridged`) changes nothing, so a batch read
  twice is appended once; an attempt the module's own worker runs is left alone; the per-job cap
  keeps its last slot for the terminal event.

  KEYS[1] meta hash
  KEYS[2] events stream
  ARGV[1] max events per job
  ARGV[2], ARGV[3], ... entry id in BullMQ's events stream, then its progress data (JSON), per entry

  Returns {'ok', appended} | {'dup'} (every entry applied before) | {'module'} (another writer's
  attempt) | {'final'} | {'gone'} | {'full', appended} (the cap is reached: the rest is dropped).
]]
local function after(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams > bms end
  return tonumber(aseq) > tonumber(bseq)
end

if redis.call('HEXISTS', KEYS[1], 'name') == 0 then return {'gone'} end
local meta = redis.call('HMGET', KEYS[1], 'terminal', 'bridged', 'attempt', 'foreign')
-- A retry that finds its write done still writes (the same value): replica acks then cover the first write.
if meta[1] then
  redis.call('HSET', KEYS[1], 'terminal', meta[1])
  return {'final'}
end
local bridged = meta[2]
-- The entries not applied before (ids increase along the batch).
local first = nil
for i = 2, #ARGV, 2 do
  if not bridged or after(ARGV[i], bridged) then
    first = i
    break
  end
end
if not first then
  redis.call('HSET', KEYS[1], 'bridged', bridged)
  return {'dup'}
end
redis.call('HSET', KEYS[1], 'bridged', ARGV[#ARGV - 1])
local attempt = tonumber(meta[3])
if not (meta[4] ~= false and tonumber(meta[4]) == attempt and attempt > 0) then return {'module'} end

-- The stream's length is the job's event count (nothing but the job's end trims it).
local count = redis.call('XLEN', KEYS[2])
local max = tonumber(ARGV[1])
local appended = 0
for i = first, #ARGV, 2 do
  if count + 2 > max then return {'full', appended} end
  redis.call('XADD', KEYS[2], '*', 'type', 'progress', 'data', ARGV[i + 1])
  count = count + 1
  appended = appended + 1
end
return {'ok', appended}
