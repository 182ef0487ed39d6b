--[[
  leader: take or keep a leader lease (the reaper loop runs in one process at a time), or
  let it go.
  KEYS[1] `reaper`, the lease
  ARGV[1] holder id   ARGV[2] lease ms (0: let the lease go, if the caller holds it)
  Returns 1 when the caller holds the lease now, 0 when another process does (or, for a
  lease of 0, when no one does).
]]
local rcall = redis.call
local holder = rcall('GET', KEYS[1])
if ARGV[2] == '0' then
  if holder == ARGV[1] then rcall('DEL', KEYS[1]) end
  return 0
end
if holder == false or holder == ARGV[1] then
  rcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
