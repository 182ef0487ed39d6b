--[[
  add: create one or many tasks atomically (at most ${add_chunk} per call: Store.add_many
  writes a larger batch in chunks).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P
  ARGV[2] JSON array of specs {title, queue, priority, requires ("a,b" sorted), after [ids
          or "$k" = the k-th spec of this batch, 0-based], parent, affinity, payload (JSON
          text), max_attempts, bid_window_ms (0: none), steal_after_ms (-1: the default
          delay; 0: no owner preference)}
  ARGV[3] the agent adding them ("" unnamed: direct store access), named in each 'added' event
  ARGV[4] "" (an add), or a plan (Store.plan) as JSON {plan = true, claim = [parent id, token,
          agent] when it goes under a planner's claim}: up to ${max_plan_tasks} specs, and
          specs may carry plan ("$k" or an id: the plan parent they roll up to) and hold (a
          parent that waits blocked for its subtasks); paths (JSON text) on any spec
  Touches P .. affine:<agent>, agent:<name>, assigned:<agent>, auctions, backoff, bids:<id>,
    capsigs:<queue>, cascaded:<id>, cascades:cancel, cascades:restore,
    children:<id>:<token>, deadlines, dependents:<id>, due:at, finished:<kind>:<queue>,
    heads:<sig>, held:<agent>, lock:<path>, lockpaths, locks, paused, plankids:<id>, plans,
    queues, ready:<queue>:<sig>, retention:due, retention:held, ring,
    seq:task, sigs, state:<state>, steal, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. claimable, hints, wake:<agent>
  Returns {0, id...} in spec order; {-1, id} when a dependency or parent does not exist;
  {-5, message} more than ${add_chunk} specs, or a "$k" that names no earlier spec of the
  batch, or a plan past its limits; {-2, id} a plan's planner claim is not live (lease lost);
  {-9, 'claim', id, holder, agent} that claim is another agent's; {-8, n} when the board
  would hold unfinished tasks of n > ${max_capsigs} different capability sets besides none
  (nothing is written in any of these cases). A task after one that is dead or cancelled
  could never run: it is added cancelled, as a cascade would have left it
  (restored by that one's retry).
]]
--@include lib
local P = ARGV[1]
local specs = cjson.decode(ARGV[2])
local now = now_ms()
local opts = {}
if ARGV[4] and ARGV[4] ~= '' then opts = cjson.decode(ARGV[4]) end
if opts.plan then
  -- A plan (Store.plan): written whole by this one call. Under a planner's claim, that
  -- claim must be the caller's and live (as every agent action checks it).
  if #specs > ${max_plan_tasks} then return {-5, 'at most ${max_plan_tasks} tasks in one plan'} end
  if opts.claim then
    local pt, err = check_lease(P, opts.claim[1], opts.claim[2], now, opts.claim[3])
    if not pt then return err end
    if tonumber(pt.plan_depth or 0) >= ${max_plan_depth} then
      return {-5, 'plans nest at most ${max_plan_depth} deep'}
    end
  end
elseif #specs > ${add_chunk} then return {-5, 'at most ${add_chunk} tasks per add call'} end

-- Validate every reference before writing anything.
for i, s in ipairs(specs) do
  for _, dep in ipairs(s.after or {}) do
    local k = string.match(dep, '^%$(%d+)$')
    if k then
      if tonumber(k) >= i - 1 then return {-5, 'after ' .. dep .. ' must name an earlier task of the batch'} end
    elseif rcall('EXISTS', P .. 'task:' .. dep) == 0 then
      return {-1, dep}
    end
  end
  if s.parent and s.parent ~= '' then
    local k = string.match(s.parent, '^%$(%d+)$')
    if k then
      if tonumber(k) >= i - 1 then return {-5, 'parent ' .. s.parent .. ' must name an earlier task of the batch'} end
    elseif rcall('EXISTS', P .. 'task:' .. s.parent) == 0 then
      return {-1, s.parent}
    end
  end
end

-- A claim looks at every capability set in use (rule 10), so their number is capped; the
-- empty one (tasks needing nothing) is not counted (lib.lua count_sig).
local fresh, seen = 0, {[''] = true}
for _, s in ipairs(specs) do
  local sig = s.requires or ''
  if not seen[sig] then
    seen[sig] = true
    if rcall('HEXISTS', P .. 'sigs', sig) == 0 then fresh = fresh + 1 end
  end
end
if fresh > 0 then
  -- (An older claimroom counted '' too: not a set the cap counts.)
  local total = rcall('HLEN', P .. 'sigs') - rcall('HEXISTS', P .. 'sigs', '') + fresh
  if total > ${max_capsigs} then return {-8, total} end
end

local ids = {}
for i, s in ipairs(specs) do
  local seq = rcall('INCR', P .. 'seq:task')
  local id = 't' .. seq
  ids[i] = id
  local parent = s.parent or ''
  local k = string.match(parent, '^%$(%d+)$')
  if k then parent = ids[tonumber(k) + 1] end
  local deps, waiting, blocker, why = {}, 0, '', ''
  for _, dep in ipairs(s.after or {}) do
    local kk = string.match(dep, '^%$(%d+)$')
    if kk then dep = ids[tonumber(kk) + 1] end
    deps[#deps + 1] = dep
    local ds = rcall('HMGET', P .. 'task:' .. dep, 'state', 'reason', 'cancelled_by')
    if is_over(ds[1]) then
      if blocker == '' then blocker, why = dep, cascade_reason(dep, ds[1], ds[2], ds[3]) end
    else
      -- Listed even when done (nothing to wait for), so that retention keeps dep as long
      -- as this task is on the board (retain-1.lua): a dependency is never found missing.
      if ds[1] ~= 'done' then waiting = waiting + 1 end
      rcall('SADD', P .. 'dependents:' .. dep, id)
      end_plain(P, dep)
    end
  end
  local spawn_token = ''
  if parent ~= '' then
    local p = rcall('HMGET', P .. 'task:' .. parent, 'state', 'token')
    if p[1] == 'claimed' then
      spawn_token = p[2]
      rcall('SADD', P .. 'children:' .. parent .. ':' .. spawn_token, id)  -- for that claim's rollback
    end
  end
  -- A plan's subtask counts in its parent's plan_left; its depth is one below the parent's.
  local plan, depth = s.plan or '', 0
  local kp = string.match(plan, '^%$(%d+)$')
  if kp then plan = ids[tonumber(kp) + 1] end
  if plan ~= '' then
    depth = tonumber(rcall('HGET', P .. 'task:' .. plan, 'plan_depth') or 0) + 1
    rcall('HINCRBY', P .. 'task:' .. plan, 'plan_left', '1')
    end_plain(P, plan)
    if rcall('HINCRBY', P .. 'task:' .. plan, 'plan_total', '1') == 1 then
      rcall('ZADD', P .. 'plans', seq_of(plan), plan)
      rcall('ZREMRANGEBYRANK', P .. 'plans', '0', -${plans_kept} - 1)
    end
    rcall('ZADD', P .. 'plankids:' .. plan, seq, id)
  end
  local t = {
    id = id, seq = seq, title = s.title, queue = s.queue, priority = s.priority,
    requires = s.requires or '', state = '', assigned = ''}
  count_sig(P, t.requires, 1)
  -- A bid window keeps it blocked: the window opens below once nothing is waited for.
  local window = tonumber(s.bid_window_ms or 0)
  local state = 'queued'
  if waiting > 0 or window > 0 or s.hold then state = 'blocked' end
  local data = {state = state, queue = s.queue, priority = tonumber(s.priority)}
  -- The whole hash in enter's one HSET, without the fields at their defaults (lib.lua
  -- task_defaults: every claim reads the whole hash, and its cost grows with each field).
  -- enter drops the '' values; attempts, failures and expiries start at their default 0.
  local fields = {
    'title', s.title, 'queue', s.queue,
    'requires', t.requires, 'after', table.concat(deps, ','), 'parent', parent,
    'affinity', s.affinity or '', 'payload', s.payload or '',
    'spawn_token', spawn_token, 'created_ms', now, 'paths', s.paths or '', 'plan', plan}
  local function put(name, value) fields[#fields + 1], fields[#fields + 2] = name, value end
  -- Priority 0 and 3 attempts are the stored format's defaults (task_defaults), whatever
  -- the defaults of a new task: every field a claim and a completion walk past costs them.
  if tonumber(s.priority) ~= 0 then put('priority', s.priority) end
  if tonumber(s.max_attempts) ~= 3 then put('max_attempts', s.max_attempts) end
  if tonumber(s.steal_after_ms or -1) ~= -1 then put('steal_after_ms', s.steal_after_ms) end
  if waiting > 0 then put('waiting', waiting) end
  if depth > 0 then put('plan_depth', depth) end
  if s.hold then put('plan_wait', 1) end
  if window > 0 then
    fields[#fields + 1], fields[#fields + 2], data.bid_window_ms = 'bid_window_ms', window, window
  end
  if blocker ~= '' then
    state, data.state, data.reason, data.after = 'cancelled', 'cancelled', why, blocker
    for _, v in ipairs({'reason', why, 'cancelled_by', blocker}) do fields[#fields + 1] = v end
    rcall('SADD', P .. 'cascaded:' .. blocker, id)
  end
  -- Plain (lib.lua end_plain): queued, outside any plan; its completion then reads no more
  -- than it needs. First in its HSET, where HMGET finds it at once; its value is '=' and
  -- the capabilities it needs (complete_reads).
  if state == 'queued' and plan == '' then
    table.insert(fields, 1, '=' .. t.requires)
    table.insert(fields, 1, 'plain')
  end
  enter(P, id, t, state, now, fields)
  audit(P, now, 'added', id, ARGV[3], '', data)
  if window > 0 and waiting == 0 and blocker == '' then open_auction(P, id, now, window, '') end
end
table.insert(ids, 1, 0)
return ids
