--[[
  leader: take or keep a leader lease (the reaper loop runs in one process at a time).
  KEYS[1] the lease key
  ARGV[1] holder id   ARGV[2] lease ms
  Returns 1 when the caller holds the lease now, 0 when another process does.
]]
local rcall = redis.call
local holder = rcall('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  rcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
