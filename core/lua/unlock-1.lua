--[[
  unlock: drop an agent's holds on paths; paths it does not hold are reported, not errors.
  KEYS[1] audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3..] normalised paths
  Returns {0, released paths...}.
]]
--@include lib
local P, agent = ARGV[1], ARGV[2]
local now = now_ms()
local out = {0}
for i = 3, #ARGV do
  if rcall('HEXISTS', P .. 'lock:' .. ARGV[i], 'h:' .. agent) == 1 then
    drop_hold(P, ARGV[i], agent)
    out[#out + 1] = ARGV[i]
  end
end
if #out > 1 then
  local released = {}
  for i = 2, #out do released[#released + 1] = out[i] end
  audit(P, now, 'unlocked', '', agent, '', {paths = released})
end
return out
