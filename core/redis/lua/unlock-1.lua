--[[
  unlock: drop an agent's holds on paths: all of them, or only those of one task (or only
  the untied ones). Paths it does not hold (expired holds hold nothing) are left out
  of the answer, not errors.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] agent   ARGV[3] "*" every hold of the agent, else the task id
  whose holds go ("" the untied ones)   ARGV[4] "1": the caller acts as the agent
  (core/acting.py), and a path locked only by other agents is refused, not passed over
  ARGV[5..] normalised paths
  Touches P .. lock:<path>, lockpaths, locks, taskevents:<id>, tasklocks:<id>
  Publishes on P .. hints
  Returns {0, paths where a live hold was dropped...}; {-9, 'lock', path, holder, agent}
  (with ARGV[4] "1") a path is locked by another agent and not by this one: nothing dropped.
]]
--@include lib
local P, agent, which = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
if ARGV[4] == '1' then
  for i = 5, #ARGV do
    local mine, other = false, nil
    for _, h in ipairs(holds_on(P, ARGV[i])) do
      if h.expires > now then
        if h.agent == agent then mine = true elseif not other then other = h.agent end
      end
    end
    if other and not mine then return {-9, 'lock', ARGV[i], other, agent} end
  end
end
local released = {}
for i = 5, #ARGV do
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
