--[[
  audit: write one audit event that is no state change (an attempt refused by
  core/acting.py, say), into the same trail as every other, trimmed as they are.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] kind (the event's type)   ARGV[3] task id ("" none)
  ARGV[4] agent   ARGV[5] detail: a JSON object (text)
  A task that is not on the board is named in the detail instead: its own index of events
  would outlive it (retention removes an index with its task).
  Touches P .. task:<id>, taskevents:<id>
  Publishes on P .. hints
  Returns {0}.
]]
--@include lib
local P, kind, id, agent = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local data = cjson.decode(ARGV[5])
if id ~= '' and rcall('EXISTS', P .. 'task:' .. id) == 0 then
  data.task = id
  id = ''
end
audit(P, now, kind, id, agent, '', data)
return {0}
