--[[
  retain: the retention step of a reaper pass (Store.reap runs it after the recovery pass).
  Removes finished tasks past their queue's horizon or count (whichever removes first; the
  newest are kept), auto-registered agents idle past the board's horizon, and trims the
  audit trail to its horizon and size. Each part is bounded per call (rule 10): at most
  ${retention_batch} finished tasks and ${retention_queues_batch} queues looked at, ${retention_agents_batch} agents, ${retention_events_batch}
  events; "more" says the caller should call again at once.

  Settings: hash `retention`, field "*" the board's, a queue's name its own, each a JSON
  object of the fields it sets (durations in ms, -1 for no limit): done_ms, done_count,
  failed_ms, failed_count (dead and cancelled), and for the board events_ms, events_bytes,
  agents_ms. Missing fields: the queue's come from the board, the board's from
  core/constants.py.

  Removing a task removes its hash and every entry naming it: its state index, its finished
  index, its dependents:/children:/cascaded:/tasklocks:/taskevents: keys, and its place in
  its dependencies' dependents:, its parent's children:, its canceller's cascaded: and the
  cascade queues; a dead one no longer counts in `sigs`. Nothing on the board is left to find it missing:
  - a done task that a task still on the board depends on (`dependents:<id>`, which lists
    every task added after it, done or not) is held in `retention:held`, not removed, and
    goes back to its finished index once the last of those tasks is removed;
  - a dead or cancelled task whose cascade is still under way waits for it.
  Tasks finished before claimroom indexed them (an older board) are indexed by a walk of
  the state indexes, ${retention_batch} a call, oldest first.
  Removals are not audited (the trail would fill with its own housekeeping); they are
  announced on the hints channel and counted in the reap report.

  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P
  Messages older than the audit trail's horizon go too (at most ${retention_messages_batch} a call).
  Touches P .. affine:<agent>, agent:<name>, agents, assigned:<agent>, broadcasts, cascaded:<id>,
    cascades:cancel, cascades:restore, children:<id>:<token>, dependents:<id>,
    finished:<kind>:<queue>, held:<agent>, inbox:<agent>, inboxread:<agent>, live,
    messages:boxes, plankids:<id>, plans, retention, retention:cursor, retention:due,
    retention:held, ring, seq:task, sigs, state:<state>, task:<id>, taskevents:<id>, tasklocks:<id>
  Publishes on P .. hints
  Returns {0, tasks removed, agents removed, events trimmed, 1 when more is due now else 0}.
]]
--@include lib
local P = ARGV[1]
-- Queues marked due from now on are marked anew (lib.lua retention_enter): what this call
-- leaves for later has a time of its own in retention:due, or no entry once nothing is left.
marked[P] = nil
local stream = P .. 'events'
local now = now_ms()
local budget = ${retention_batch}
local removed, agents_removed, trimmed, more = 0, 0, 0, 0
local cursor = P .. 'retention:cursor'

-- Settings ---------------------------------------------------------------------------

local function stored(scope)
  local raw = rcall('HGET', P .. 'retention', scope)
  if raw then
    local ok, v = pcall(cjson.decode, raw)
    if ok and type(v) == 'table' then return v end
  end
  return {}
end

local board = {
  done_ms = ${retention_done_ms}, done_count = ${retention_done_count},
  failed_ms = ${retention_failed_ms}, failed_count = ${retention_failed_count},
  events_ms = ${retention_events_ms}, events_bytes = ${retention_events_bytes},
  agents_ms = ${retention_agents_ms}}
for k, v in pairs(stored('*')) do
  if board[k] then board[k] = tonumber(v) end
end

local per_queue = {}
local function settings(q)
  if not per_queue[q] then
    local s = {}
    for k, v in pairs(board) do s[k] = v end
    for k, v in pairs(stored(q)) do
      if s[k] then s[k] = tonumber(v) end
    end
    per_queue[q] = s
  end
  return per_queue[q]
end

-- Removing a task ----------------------------------------------------------------------

-- dep lost a dependent: a done task held only for its dependents is removable again.
local function release_dependency(dep)
  if rcall('EXISTS', P .. 'dependents:' .. dep) == 1 then return end
  local score = rcall('ZSCORE', P .. 'retention:held', dep)
  if not score then return end
  rcall('ZREM', P .. 'retention:held', dep)
  local q = rcall('HGET', P .. 'task:' .. dep, 'queue')
  if q then
    rcall('ZADD', P .. 'finished:done:' .. q, score, dep)
    rcall('ZADD', P .. 'retention:due', 'LT', '0', 'done:' .. q)
  end
end

local function remove_task(id, t)
  rcall('DEL', P .. 'task:' .. id, P .. 'dependents:' .. id, P .. 'children:' .. id,
    P .. 'cascaded:' .. id, P .. 'tasklocks:' .. id, P .. 'taskevents:' .. id, P .. 'plankids:' .. id)
  rcall('ZREM', P .. 'plans', id)
  if t.plan and t.plan ~= '' then rcall('ZREM', P .. 'plankids:' .. t.plan, id) end
  rcall('ZREM', P .. 'state:' .. t.state, id)
  rcall('ZREM', P .. 'finished:' .. finished_kind(t.state) .. ':' .. t.queue, id)
  rcall('ZREM', P .. 'retention:held', id)
  rcall('ZREM', P .. 'cascades:cancel', id)
  rcall('ZREM', P .. 'cascades:restore', id)
  for _, dep in ipairs(split(t.after)) do
    rcall('SREM', P .. 'dependents:' .. dep, id)
    release_dependency(dep)
  end
  -- The subtasks its last claim spawned (an earlier claim's went with its rollback); its
  -- place among its parent's (a board written before per-claim sets: children:<parent>).
  if t.token ~= '' then rcall('DEL', P .. 'children:' .. id .. ':' .. t.token) end
  if t.parent ~= '' then
    rcall('SREM', P .. 'children:' .. t.parent .. ':' .. t.spawn_token, id)
    rcall('SREM', P .. 'children:' .. t.parent, id)
  end
  if t.cancelled_by ~= '' then rcall('SREM', P .. 'cascaded:' .. t.cancelled_by, id) end
  -- A dead task still counted as unfinished for its capability set (count_sig).
  if t.state == 'dead' then count_sig(P, t.requires, -1) end
  removed = removed + 1
end

local FIELDS = {'state', 'queue', 'updated_ms', 'after', 'parent', 'cancelled_by', 'token', 'spawn_token',
  'requires', 'plan'}
local function load(id)
  local v = rcall('HMGET', P .. 'task:' .. id, unpack(FIELDS))
  if not v[1] then return nil end
  local t = {}
  for i, name in ipairs(FIELDS) do t[name] = v[i] or '' end
  return t
end

-- One queue's finished tasks of one kind ("done:q" or "failed:q"), oldest first, until
-- one is to be kept or the budget is spent; then when to look at it next.
local function visit(member)
  local kind, q = string.match(member, '^(%a+):(.+)$')
  local zk = P .. 'finished:' .. member
  local s = settings(q)
  local keep_ms, keep_n = s[kind .. '_ms'], s[kind .. '_count']
  local n = rcall('ZCARD', zk)
  local due = now + ${retention_recheck_ms}
  local head = rcall('ZRANGE', zk, '0', budget - 1, 'WITHSCORES')
  local stop = false
  for i = 1, #head, 2 do
    if budget <= 0 then break end
    local id, score = head[i], head[i + 1]
    local t = load(id)
    if not t or finished_kind(t.state) ~= kind or t.queue ~= q then
      rcall('ZREM', zk, id)  -- an entry an older or interrupted change left behind
      n = n - 1
    else
      local old = keep_ms >= 0 and tonumber(t.updated_ms) <= now - keep_ms
      local over = keep_n >= 0 and n > keep_n
      if not old and not over then
        if keep_ms >= 0 then due = math.min(due, tonumber(t.updated_ms) + keep_ms) end
        stop = true
        break
      end
      if rcall('EXISTS', P .. 'dependents:' .. id) == 1 then
        if kind == 'done' then
          -- Kept while a task on the board depends on it (release_dependency).
          rcall('ZADD', P .. 'retention:held', score, id)
          rcall('ZREM', zk, id)
          n = n - 1
        else
          due = now + 1000  -- its cascade is under way: look again in a second
          stop = true
          break
        end
      else
        remove_task(id, t)
        n = n - 1
      end
    end
    budget = budget - 1
  end
  -- (ZCARD again: a removal may have released a held task into this very set)
  if rcall('ZCARD', zk) == 0 then
    rcall('ZREM', P .. 'retention:due', member)
  elseif not stop then
    -- The budget ran out before a task to keep: go on at the next call.
    rcall('ZADD', P .. 'retention:due', now, member)
    more = 1
  else
    rcall('ZADD', P .. 'retention:due', due, member)
  end
end

-- Tasks that finished before this index existed ------------------------------------------
-- Walked once per board by creation order up to the newest task at the walk's start (tasks
-- finishing later are indexed as they finish), scored below every indexed one.
local walk = rcall('HGET', cursor, 'backfill')
if walk ~= 'done' then
  local states = {'done', 'dead', 'cancelled'}
  local at, pos, upto = 1, 0, tonumber(rcall('GET', P .. 'seq:task') or 0)
  if walk then
    local a, p, u = string.match(walk, '^(%d+):(%d+):(%d+)$')
    at, pos, upto = tonumber(a), tonumber(p), tonumber(u)
  end
  local state, step = states[at], ${retention_batch}
  local found = rcall('ZRANGEBYSCORE', P .. 'state:' .. state, '(' .. pos, upto, 'WITHSCORES', 'LIMIT', '0', step)
  for i = 1, #found, 2 do
    local id, seq = found[i], tonumber(found[i + 1])
    local kind, q = finished_kind(state), rcall('HGET', P .. 'task:' .. id, 'queue')
    if q and not rcall('ZSCORE', P .. 'finished:' .. kind .. ':' .. q, id)
        and not rcall('ZSCORE', P .. 'retention:held', id) then
      rcall('ZADD', P .. 'finished:' .. kind .. ':' .. q, seq - ${finished_backfill_offset}, id)
      rcall('ZADD', P .. 'retention:due', 'LT', '0', kind .. ':' .. q)
    end
    pos = seq
  end
  if #found < 2 * step then at, pos = at + 1, 0 end
  if at > #states then
    rcall('HSET', cursor, 'backfill', 'done')
  else
    rcall('HSET', cursor, 'backfill', at .. ':' .. pos .. ':' .. upto)
    more = 1  -- a catch-up, once per board: the next call goes on at once
  end
end

for _, member in ipairs(rcall('ZRANGEBYSCORE', P .. 'retention:due', '-inf', now, 'LIMIT', '0', '${retention_queues_batch}')) do
  if budget <= 0 then break end
  visit(member)
end
if #rcall('ZRANGEBYSCORE', P .. 'retention:due', '-inf', now, 'LIMIT', '0', '1') > 0 then more = 1 end

-- Agents a claim registered, holding nothing, not seen for the board's horizon -----------
if board.agents_ms >= 0 then
  local scan = rcall('SSCAN', P .. 'agents', rcall('HGET', cursor, 'agents') or '0', 'COUNT', '${retention_agents_batch}')
  for _, name in ipairs(scan[2]) do
    local ak = P .. 'agent:' .. name
    local a = rcall('HMGET', ak, 'name', 'auto', 'last_seen_ms', 'registered_ms')
    if not a[1] then
      rcall('SREM', P .. 'agents', name)
    elseif a[2] == '1' and math.max(tonumber(a[3] or 0), tonumber(a[4] or 0)) <= now - board.agents_ms
        and rcall('SCARD', P .. 'held:' .. name) == 0 and rcall('EXISTS', P .. 'assigned:' .. name) == 0
        and rcall('EXISTS', P .. 'affine:' .. name) == 0 then
      rcall('DEL', ak, P .. 'held:' .. name)
      ring_drop(P, name)
      rcall('SREM', P .. 'agents', name)
      agents_removed = agents_removed + 1
    end
  end
  rcall('HSET', cursor, 'agents', scan[1])
end

-- The audit trail: its horizon, then its size ---------------------------------------------
-- Whole stream nodes (~100 events) go first, at most ${retention_events_batch} events a call; then the
-- rest of a node, exactly.
local batch = ${retention_events_batch}
if board.events_ms >= 0 then
  local cutoff = now - board.events_ms
  local n = rcall('XTRIM', stream, 'MINID', '~', cutoff, 'LIMIT', batch)
  if n >= batch then more = 1 else n = n + rcall('XTRIM', stream, 'MINID', cutoff) end
  trimmed = trimmed + n
end
if board.events_bytes >= 0 then
  -- MEMORY USAGE samples a few nodes (the oldest: the ones trimming removes): O(samples).
  -- Trimming to the share of the count that fits assumes events of one size; when the
  -- oldest were smaller, the next look (up to 4 here) trims again.
  local left = batch
  for _ = 1, 4 do
    local bytes = rcall('MEMORY', 'USAGE', stream, 'SAMPLES', '${events_bytes_samples}')
    if not bytes or bytes <= board.events_bytes then break end
    if left <= 0 then more = 1; break end
    local len = rcall('XLEN', stream)
    local keep = math.floor(len * board.events_bytes / bytes)
    if len - keep > left then keep = len - left end
    local n = rcall('XTRIM', stream, 'MAXLEN', keep)
    trimmed, left = trimmed + n, left - n
    if n == 0 then break end
  end
end

-- Messages older than the audit trail's horizon (core/messages.py) ------------------------
-- Boxes are looked at by the time of their oldest message (or earlier), oldest first; at
-- most ${retention_messages_batch} messages go a call.
local messages_gone = 0
if board.events_ms >= 0 then
  local cutoff, left, boxes = now - board.events_ms, ${retention_messages_batch}, P .. 'messages:boxes'
  for _, box in ipairs(rcall('ZRANGEBYSCORE', boxes, '-inf', '(' .. cutoff, 'LIMIT', '0', '${retention_queues_batch}')) do
    if left <= 0 then more = 1; break end
    local key = P .. 'inbox:' .. box
    if box == '*' then key = P .. 'broadcasts' end
    local gone, oldest = 0, nil
    for _, raw in ipairs(rcall('ZRANGE', key, '0', left - 1)) do
      local at = tonumber(cjson.decode(raw).at_ms)
      if at >= cutoff then oldest = at; break end
      gone = gone + 1
    end
    if gone > 0 then rcall('ZREMRANGEBYRANK', key, '0', gone - 1) end
    left, messages_gone = left - gone, messages_gone + gone
    if oldest then
      rcall('ZADD', boxes, oldest, box)
    elseif rcall('EXISTS', key) == 0 then
      rcall('ZREM', boxes, box)
    else
      more = 1  -- the batch ended inside this box
    end
    if box ~= '*' then
      -- An inbox's read marks are exactly its ids: those below its oldest go with it.
      local first = rcall('ZRANGE', key, '0', '0', 'WITHSCORES')
      if #first > 0 then
        rcall('ZREMRANGEBYSCORE', P .. 'inboxread:' .. box, '-inf', '(' .. first[2])
      else
        rcall('DEL', P .. 'inboxread:' .. box)
      end
    end
  end
end

if removed + agents_removed + messages_gone > 0 then rcall('PUBLISH', P .. 'hints', 'retention ') end
return {0, removed, agents_removed, trimmed, more}
