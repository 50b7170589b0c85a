--[[
  Reads a job's metadata for one caller; the owner is checked before anything else is returned
  (the result or error of another owner's job never leaves Redis).

  KEYS[1] meta hash
  ARGV[1] '1' to check the owner, '0' for system access (no ownership check)
  ARGV[2] the caller's owner (when checked)

  Returns {} when the job is unknown or not the caller's, else the hash as field, value pairs.
]]
local meta = redis.call('HMGET', KEYS[1], 'name', 'owner')
if not meta[1] or (ARGV[1] == '1' and meta[2] ~= ARGV[2]) then return {} end
return redis.call('HGETALL', KEYS[1])
