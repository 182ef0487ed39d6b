--[[
  extend: an operator gives a live claim (and its locks) more time (compare-and-set on the
  token seen).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] task id   ARGV[3] seen token   ARGV[4] extra ms   ARGV[5] operator
  Touches P .. deadlines, due:at, lock:<path>, locks, task:<id>, taskevents:<id>,
    tasklocks:<id>
  Publishes on P .. hints
  Returns {0, new deadline_ms}; {-1, id} no such task; {-4, id} changed since seen.
]]
--@include lib
local P, id, operator = ARGV[1], ARGV[2], ARGV[5]
local now = now_ms()
local t, err = check_seen(P, id, 'claimed', ARGV[3])
if not t then return err end
local deadline = math.max(tonumber(t.deadline_ms), now) + tonumber(ARGV[4])
rcall('HSET', P .. 'task:' .. id, 'deadline_ms', deadline, 'updated_ms', now)
rcall('ZADD', P .. 'deadlines', deadline, id)
due_at(P, deadline)
renew_task_locks(P, id, deadline)
audit(P, now, 'extended', id, t.agent, t.token, {deadline_ms = deadline}, operator)
return {0, deadline}
