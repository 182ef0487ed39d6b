--[[
  unlock: drop an agent's holds on paths: all of them, or only those of one task (or only
  the untied ones). Paths it does not hold (expired holds hold nothing) are left out
  of the answer, not errors.
  KEYS[1] audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] "*" every hold of the agent, else the task id
  whose holds go ("" the untied ones)   ARGV[4..] normalised paths
  Returns {0, paths where a live hold was dropped...}.
]]
--@include lib
local P, agent, which = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local released = {}
for i = 4, #ARGV do
  local dropped = false
  for _, h in ipairs(holds_on(P, ARGV[i])) do
    -- An expired hold held nothing: the reaper drops it (and says so in the audit trail).
    if h.agent == agent and (which == '*' or h.task == which) and h.expires > now then
      drop_hold(P, ARGV[i], agent, h.task)
      dropped = true
    end
  end
  if dropped then released[#released + 1] = ARGV[i] end
end
if #released > 0 then
  local task = ''
  if which ~= '*' then task = which end
  audit(P, now, 'unlocked', task, agent, '', {paths = released})
end
return {0, unpack(released)}
