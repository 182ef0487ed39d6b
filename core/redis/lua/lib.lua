--[[
  lib: helpers shared by the scripts. Never run alone. The store loads every script as one
  function of a Redis function library (core/redis/scripts.py library): this file once at
  its top, each script's body as a function that calls begin_call() first; the library is
  loaded once per server, so these helpers are not rebuilt on every call (~80k instructions
  a call when they were). A script sent whole (EVAL, the hooks' heartbeat) has its
  `--@include lib` line replaced by this file and a begin_call(). Dollar-brace tokens are
  replaced by the values of core/constants.py either way, so each helper has one definition.

  Conventions of every script:
    P (ARGV[1]) is the namespace prefix `{claimroom:NS}:`; KEYS[1] is the audit stream
    (it routes the call to the namespace's slot on Redis Cluster).
    Time is always the store's clock (TIME), in ms.
    Return: {0, ...} done; {1, ...} nothing to do (claim); {negative code, detail...} refused,
    codes as in core/errors.py ErrorCode.
    Keys are spelled as core/constants.py's builders spell them (P .. 'task:' .. id is
    task_key); Python spells them only through those builders.
    A script's header gives its KEYS, ARGV, every key it reaches through P ("Touches P ..
    task:<id>, ..."), every channel it announces on ("Publishes on P .. hints") and every
    code it returns. Touches is what the script and the helpers here that it calls can
    reach, branches it never takes included. tests/test_lua_headers.py holds headers to
    the code both ways.
]]
-- Set by begin_call: redis.call does not exist while a function library loads.
local rcall = nil
local EMPTY = {}  -- never written: what `more or EMPTY` reads when there is no more
local DONE = {0}  -- never written: a completion that unblocked nothing (complete_task)
-- Functions defined at the end of this file that enter and leave call (see plan_settle).
local later = {}
-- Whether this call wrote to one of the per-call logs and budgets that few calls touch
-- (announced, the cascades' budget and log, auction_log, plan_rolling_back): begin_call
-- starts them anew only then (~15 Lua steps on every call otherwise). Whatever writes one
-- sets it.
local left_over = false

-- The store's clock in ms, also kept as text (ms): Redis 7.0 formats a number passed to
-- redis.call with "%.17g", ~3k instructions for a 13-digit time, and a claim passes the
-- time half a dozen times. The text is cut from TIME's own digits, never formatted.
-- clock_s: the clock's whole seconds, as text (touch_agent).
local clock, clock_text, clock_s = nil, nil, nil
local function now_ms()
  local t = rcall('TIME')
  clock_s = t[1]
  clock_text = clock_s .. string.sub('00000' .. t[2], -6, -4)  -- seconds, then ms of the us
  clock = tonumber(clock_text)
  return clock
end

-- n as an argument of redis.call: the clock's text when n is the clock, else n.
local function ms(n)
  if n == clock then return clock_text end
  return n
end

-- Whether the time `text` (ms, as stored; 'inf' never) is now or earlier. Two times of as
-- many digits compare as text as they do as numbers, and the text costs Redis ~0.2k
-- instructions where tonumber costs ~1.8k (a lease's deadline and the next due time,
-- on every cycle).
local function passed(text, now)
  if now == clock and #text == #clock_text then return text <= clock_text end
  local v = tonumber(text)
  return not v or v <= now  -- not a time: as passed (a sweep writes due:at anew)
end

-- An integer as text for redis.call or a reply: "%d" costs ~10x less than the "%.17g" Redis
-- applies to a Lua number (a token, a deadline, an attempt count on every claim).
local function int_text(n)
  return string.format('%d', n)
end

-- A small integer argument (a lease length, a claim count, a capacity: a handful of values
-- on a board) as a number, and as its text spelled by int_text: tonumber and int_text cost
-- Redis ~1.5k and ~2k instructions a call, a lookup of what they gave before ~0.1k. What it
-- keeps is forgotten all at once past ${small_ints_kept} texts.
local small_n, small_t, small_kept = {}, {}, 0
local function small_int(s)
  local n = small_n[s]
  if n then return n, small_t[s] end
  n = tonumber(s)
  if not n then return nil, nil end
  if small_kept >= ${small_ints_kept} then small_n, small_t, small_kept = {}, {}, 0 end
  small_kept = small_kept + 1
  small_n[s], small_t[s] = n, int_text(n)
  return n, small_t[s]
end

-- When something next falls due: a lease deadline, a backoff's end, a bidding window's
-- close, a steal time, an agent's last sighting plus the live window, or a cascade's
-- backlog (due at once). Every claim used to ask each of those indexes (seven commands,
-- ~100k instructions); it now reads this one time (sweep_due) and sweeps only once it
-- has come. Whoever adds to one of those indexes lowers it here; a sweep sets it anew
-- from the indexes' heads. So it may be early (a lease renewed since), never late.
-- due_seen: the time as this call last read or wrote it (nil: unknown), so a lease that
-- ends later than what is already due writes nothing (a claim's deadline, most often).
-- The time is one integer string (ms, or 'inf': nothing pending), not a score: Redis 7.0
-- spells a score in a reply with "%.17g" (~3k instructions), and a claim reads it every time.
-- A board without it (written before, or just imported) gets it from the next sweep, which
-- looks at every index first: a write here would hide what falls due earlier.
-- at: the time, a number or its text; text: its text, when the caller has it (written as is).
-- due_text: the time as read (sweep_due), until due_seen holds it as a number: a lease that
-- ends after it is told by comparing the two texts (passed says why), no tonumber.
local due_seen, due_text = nil, nil
local function due_at(P, at, text)
  if not due_seen then
    due_text = due_text or rcall('GET', P .. 'due:at')
    if not due_text then return end
    local mine = text or at
    if type(mine) == 'string' and #mine == #due_text and due_text <= mine then return end
    due_seen = tonumber(due_text) or -math.huge  -- 'inf' reads as math.huge; not a time: swept anew
  end
  local n = tonumber(at)
  if due_seen <= n then return end
  rcall('SET', P .. 'due:at', text or type(at) == 'string' and at or int_text(n))
  due_seen = n
end

-- Every fencing token comes from here, and tokens never go backwards, even across a
-- failover or a restart that lost writes (see core/constants.py epoch_base_ms). The run_id
-- names the Redis process serving now: when it is not the one that handed out the last
-- token, a new epoch begins and the counter jumps to the epoch's floor (never down). A
-- zombie's token from before is then below, and unequal to, every token handed out after.
-- INFO costs ~2 us: a library reads it once per server process (a promoted replica or a
-- restarted server is a new process, with its own Lua state: it reads its own run_id).
-- Once a board's epoch was checked in this process, the check (an HGET) is skipped while its
-- counter only goes up (issued[P], the last token handed out here): a counter that went back
-- (its keys deleted or flushed meanwhile) is checked again, as on a new process.
local run_id = nil
local issued = {}
local function next_token(P, now)
  local last = issued[P]
  if last then
    local token = rcall('INCR', P .. 'seq:token')
    if token > last then
      issued[P] = token
      return int_text(token)  -- as text: see int_text
    end
  end
  if not run_id then run_id = string.match(rcall('INFO', 'server'), 'run_id:(%x+)') end
  if rcall('HGET', P .. 'epoch', 'run_id') ~= run_id then
    local floor = (now - ${epoch_base_ms}) * ${epoch_tokens_per_ms}
    if tonumber(rcall('GET', P .. 'seq:token') or 0) < floor then rcall('SET', P .. 'seq:token', floor) end
    rcall('HINCRBY', P .. 'epoch', 'n', '1')
    rcall('HSET', P .. 'epoch', 'run_id', run_id, 'since_ms', now)
  end
  local token = rcall('INCR', P .. 'seq:token')
  issued[P] = token
  return int_text(token)
end

local function split(s)
  if not s or s == '' then return EMPTY end  -- never written by a caller: no table to make
  local out = {}
  for item in string.gmatch(s, '[^,]+') do out[#out + 1] = item end
  return out
end

local function to_table(raw)
  local t = {}
  for i = 1, #raw, 2 do t[raw[i]] = raw[i + 1] end
  return t
end

-- A task hash stores no field at its default (add-1.lua; enter stores no ''): a task read
-- whole (load_task) reads these as their defaults, as from the full hashes an older
-- claimroom wrote, so either shape reads alike (`t.affinity == ''`, `t.attempts`), and
-- field_of asks Redis nothing for them. A metatable, not fields: pairs (the claim's reply),
-- HSET and the reply never see them. A table read by HMGET has no defaults (absent: nil).
local task_defaults = {__index = {
  requires = '', after = '', parent = '', affinity = '', payload = '', steal_after_ms = '-1',
  attempts = '0', failures = '0', expiries = '0', waiting = '0', spawn_token = '', paths = '',
  plan = '', plan_depth = '0', plan_wait = '0', plain = false, priority = '0', max_attempts = '3',
  ttl_ms = ${stored_ttl_ms}}}

-- A task's id is t<seq> (add-1.lua; an import refuses any other, core/dump.py check), so
-- its hash holds neither: its key names it, and seq_of reads the seq from the id. Two fields
-- less for every claim and completion to walk past (~6k instructions a cycle). A hash
-- an older claimroom wrote still has both, alike.
local function seq_of(id)
  return string.sub(id, 2)
end

-- A task's table from its HGETALL reply (raw, not empty).
local function task_of(raw, id)
  local t = setmetatable(to_table(raw), task_defaults)
  t.seq = t.seq or seq_of(id)
  return t
end

-- The task, or nil; and its fields as read (flat), for a caller that answers with them
-- (the client adds the id and seq it knows: core/models.py Task.from_fields).
local function load_task(P, id)
  local raw = rcall('HGETALL', P .. 'task:' .. id)
  if #raw == 0 then return nil end
  return task_of(raw, id), raw
end

-- The lean claim's task (claim_task): from a task's HGETALL reply, only the fields that
-- claim reads, into one table kept from call to call (lean_task; attempts at its default);
-- nil when the task is not for that claim: not queued, assigned to an agent, or waiting
-- for its owner (steal_ms > 0, as waits_for_owner says). A whole task's table grows through
-- four rehashes and gets its defaults and seq: ~8k instructions a claim more.
local lean_reads = {state = true, assigned = true, steal_ms = true, attempts = true, claim_eid = true,
  ttl_ms = true}
local lean_task = {}
local function lean_read(raw)
  local l = lean_task
  l.state, l.assigned, l.steal_ms, l.attempts, l.claim_eid, l.ttl_ms = nil, nil, nil, nil, nil, nil
  for i = 1, #raw, 2 do
    local k = raw[i]
    if lean_reads[k] then l[k] = raw[i + 1] end
  end
  if l.state ~= 'queued' or (l.assigned or '') ~= '' or (tonumber(l.steal_ms or 0) or 0) > 0 then return nil end
  l.attempts = l.attempts or task_defaults.__index.attempts
  return l
end

local hinted = false  -- whether this call published its hint yet (audit)

-- Upkeep done on one call in ${upkeep_every} per board and Redis process, not on each (core/
-- constants.py upkeep_every): counts[P] is how many calls since the last time, and the first
-- call in a process does it (a restart, a promoted replica). A library's locals outlive a call.
-- The trail's cap (trims: XADD MAXLEN ~, ~1k instructions an XADD, twice a cycle) and
-- deadlines_keep (keeps: enter_claimed).
local trims, keeps = {}, {}
local function every_nth(counts, P)
  local n = counts[P]
  if n and n < ${upkeep_every} then
    counts[P] = n + 1
    return false
  end
  counts[P] = 1
  return true
end

-- Append an event (its field, value pairs) to the audit trail; its id.
local function append_event(P, ...)
  if every_nth(trims, P) then return rcall('XADD', P .. 'events', 'MAXLEN', '~', '${audit_max_len}', '*', ...) end
  return rcall('XADD', P .. 'events', '*', ...)
end

-- An audit entry is one field, value pair: the event's type, then "<task> <agent> <token>
-- <at_ms> <data>" (any of them empty but at_ms; data, JSON, last: it may hold spaces; ids and
-- names never do). Six named fields (type, at_ms, task, agent, token, data) cost Redis ~2.3k
-- instructions more an XADD, twice a cycle. An operator's event keeps named fields (an
-- operator's name may hold spaces), as every event before did; core/models.py
-- event_fields reads both.
local function audit_entry(P, now, etype, id, agent, token, data, operator)
  -- data: a table, or its JSON already spelled (the claim's and completion's, built by hand).
  if data and type(data) ~= 'string' then data = cjson.encode(data) end
  if type(token) == 'number' then token = token ~= 0 and int_text(token) or '' end
  if not operator or operator == '' then
    return append_event(P, etype, (id or '') .. ' ' .. (agent or '') .. ' ' .. (token or '') .. ' ' .. ms(now) .. ' '
      .. (data or ''))
  end
  local f = {'type', etype, 'at_ms', ms(now)}
  if id and id ~= '' then f[#f + 1] = 'task'; f[#f + 1] = id end
  if agent and agent ~= '' then f[#f + 1] = 'agent'; f[#f + 1] = agent end
  if token and token ~= '' then f[#f + 1] = 'token'; f[#f + 1] = token end
  f[#f + 1] = 'operator'; f[#f + 1] = operator
  if data then f[#f + 1] = 'data'; f[#f + 1] = data end
  return append_event(P, unpack(f))
end

-- What follows every audit event of a task: the task's own index of its events (`events
-- --task` reads it instead of the whole trail; the newest ${task_events_max} are kept. Ids the
-- trail has trimmed meanwhile are skipped on reading; the index goes with the task,
-- retain-1.lua); and one hint a call: a view re-reads the board on any hint (its text is
-- for a person watching the channel), and a call's changes are one atomic step.
-- The index is the list `taskevents:<id>` and, for the events of the lean claim and the
-- lean completion, two fields of the task hash written with their state (core/constants.py
-- task_event_fields): an RPUSH a step costs Redis ~4.5k instructions, a field in an HSET
-- made anyway ~3k.
-- core/redis/reads.py task_events reads the three as one.
local function index_event(P, id, eid)
  local tk = P .. 'taskevents:' .. id
  if rcall('RPUSH', tk, eid) > ${task_events_max} then rcall('LTRIM', tk, '-${task_events_max}', '-1') end
end

local function hint(P, etype, id)
  if not hinted then
    hinted = true
    rcall('PUBLISH', P .. 'hints', etype .. ' ' .. (id or ''))
  end
end

local function audit_after(P, etype, id, eid)
  if id and id ~= '' then index_event(P, id, eid) end
  hint(P, etype, id)
end

-- A claim's or a completion's event: task, agent, token (text) and data (its JSON already
-- spelled) all given, no operator: audit_entry's one-field entry, with no table to build (a
-- table and its appends cost Redis ~10k instructions, twice on every cycle). at: the time as
-- text (ms). Its id, not yet indexed.
local function lease_event(P, at, etype, id, agent, token, data)
  local entry, eid = id .. ' ' .. agent .. ' ' .. token .. ' ' .. at .. ' ' .. data, nil
  if every_nth(trims, P) then  -- append_event, spelled out: no varargs to copy
    eid = rcall('XADD', P .. 'events', 'MAXLEN', '~', '${audit_max_len}', '*', etype, entry)
  else
    eid = rcall('XADD', P .. 'events', '*', etype, entry)
  end
  hint(P, etype, id)
  return eid
end

local function audit_lease(P, now, etype, id, agent, token, data)
  index_event(P, id, lease_event(P, ms(now), etype, id, agent, token, data))
end

-- Append the audit event and announce the change; the two always go together with the
-- state change that calls this (rule 4: one atomic step).
local function audit(P, now, etype, id, agent, token, data, operator)
  if id and id ~= '' and agent and agent ~= '' and type(token) == 'string' and type(data) == 'string' and not operator then
    return audit_lease(P, now, etype, id, agent, token, data)
  end
  audit_after(P, etype, id, audit_entry(P, now, etype, id, agent, token, data, operator))
end

-- Retention's index of finished tasks (retain-1.lua removes from it): a task that enters
-- done, dead or cancelled joins `finished:<kind>:<queue>` in the order tasks finish (kind
-- "done", or "failed" for dead and cancelled), and its queue is due for a look by the next
-- retention pass. O(1), on the path of every task that finishes.
local function finished_kind(state)
  if state == 'done' then return 'done' end
  if state == 'dead' or state == 'cancelled' then return 'failed' end
  return nil
end

-- A finished task's score there: the ms it finished in (the store's clock), then three digits
-- of its rank among the tasks this Redis process finished in that ms (16 digits, which a
-- double holds exactly), as text. So the order tasks finish in, in one call or several,
-- without the counter a board kept before (INCR seq:finished and its number as text: ~5k
-- instructions on every completion); an older board's entries, numbered from 1 by it, come
-- first, as they finished first. Past 999 in one ms (never seen: a call finishes at most
-- ${cascade_batch} in a cascade) the rest tie and go by id; a clock set back, or a failover
-- to a server whose clock is behind, puts what finishes next before what finished last.
local fin_ms, fin_n, ranks = nil, 0, {}
local function finish_order(now)
  local at = ms(now)
  if at == fin_ms then
    if fin_n < 999 then fin_n = fin_n + 1 end
  else
    fin_ms, fin_n = at, 0
  end
  local rank = ranks[fin_n]
  if not rank then
    rank = string.format('%03d', fin_n)
    ranks[fin_n] = rank
  end
  return at .. rank
end

-- The queues this process marked due since retention last ran on the board (marked[P][kind]
-- [queue]): a queue is marked once per retention call, not on each task that finishes
-- (~5k instructions a completion). retain-1.lua forgets them as it starts; until then the
-- mark it has not seen yet stands (due at once). A process that starts anew marks again.
local marked = {}
local function retention_enter(P, id, queue, new, now)
  local kind = finished_kind(new)
  if not kind then return end
  rcall('ZADD', P .. 'finished:' .. kind .. ':' .. queue, finish_order(now), id)
  local board = marked[P]
  if not board then
    board = {done = {}, failed = {}}
    marked[P] = board
  end
  if not board[kind][queue] then
    board[kind][queue] = true
    rcall('ZADD', P .. 'retention:due', 'LT', '0', kind .. ':' .. queue)
  end
end

-- A task leaving a finished state (an operator's retry or requeue of a dead task, a
-- restore of a cancelled one) is no longer retention's to remove.
local function retention_leave(P, id, t)
  local kind = finished_kind(t.state)
  if not kind then return end
  rcall('ZREM', P .. 'finished:' .. kind .. ':' .. t.queue, id)
  rcall('ZREM', P .. 'retention:held', id)
end

-- Highest priority first, then creation order: lower score is claimed first.
local function ready_score(t)
  return (${max_priority} - tonumber(t.priority)) * ${ready_priority_step} + tonumber(t.seq)
end

-- The claimable work is indexed so that a claim looks only at what it could take (rule 10):
--   ready:<q>:<sig>  queued, unassigned tasks of queue q needing exactly the capabilities sig
--   capsigs:<q>      the signatures with a non-empty ready set in q
--   queues           the queues with a non-empty ready set
--   heads:<sig>      open (not paused) queues with ready tasks needing sig, scored by their
--                    best task's ready score, or below it: a claim that found no other
--                    queue or signature to rank against leaves the score it took
--                    (claim_tasks), and the first claim that finds one puts it right
--   sigs             sig -> how many unfinished tasks need it, for every sig but ''
--                    (at most ${max_capsigs} fields: count_sig)
-- An entry leaves each index as soon as it would stand for nothing, but a ready set that a
-- claim of one task emptied: the next claim or resume to look at it (claim_tasks says why).
-- Claimable work is announced on `claimable` ("queue sig"), and what concerns one agent
-- alone on its `wake:<agent>` channel, for waiting claimers; views listen to `hints`.
-- Each message once per script call (an add of 100 tasks to one queue wakes a claimer once).
local announced = {}
local function announce(channel, message)
  local key = channel .. ' ' .. message
  if not announced[key] then
    announced[key], left_over = true, true
    rcall('PUBLISH', channel, message)
  end
end

local function ready_add(P, id, t)
  local q, sig, score = t.queue, t.requires or '', ready_score(t)
  rcall('ZADD', P .. 'ready:' .. q .. ':' .. sig, score, id)
  if rcall('SADD', P .. 'capsigs:' .. q, sig) == 1 then rcall('SADD', P .. 'queues', q) end
  if rcall('SISMEMBER', P .. 'paused', q) == 0 then
    rcall('ZADD', P .. 'heads:' .. sig, 'LT', score, q)
    announce(P .. 'claimable', q .. ' ' .. sig)
  end
end

-- The ready set of queue q and signature sig is empty: it leaves the indexes (a caller
-- that just found it empty says so; others ask ready_refresh).
local function ready_gone(P, q, sig)
  rcall('ZREM', P .. 'heads:' .. sig, q)
  rcall('SREM', P .. 'capsigs:' .. q, sig)
  if rcall('EXISTS', P .. 'capsigs:' .. q) == 0 then rcall('SREM', P .. 'queues', q) end
end

-- A ready set of queue q and signature sig lost its head: its queue's place in heads:<sig>
-- follows its new head, and a set left empty leaves the indexes.
local function ready_refresh(P, q, sig)
  local rk = P .. 'ready:' .. q .. ':' .. sig
  local head = rcall('ZRANGE', rk, '0', '0', 'WITHSCORES')
  if #head > 0 then
    rcall('ZADD', P .. 'heads:' .. sig, 'XX', head[2], q)  -- XX: a paused queue stays out
  else
    ready_gone(P, q, sig)
  end
end

-- popped: the claim already took it out of its ready set (ZPOPMIN), and refreshes the
-- set's place once for all it took (ready_refresh).
local function ready_remove(P, id, t, popped)
  if popped then return end
  local q, sig = t.queue, t.requires or ''
  rcall('ZREM', P .. 'ready:' .. q .. ':' .. sig, id)
  ready_refresh(P, q, sig)
end

-- One more (by = 1) or one fewer (by = -1) unfinished task needing the signature sig (a
-- task's `requires`; nil as ''). The empty one (no capabilities) is not counted: any agent
-- takes its tasks, so a claim always looks at it, and the cap leaves it out (~5k
-- instructions on every add and completion).
local function count_sig(P, sig, by)
  if not sig or sig == '' then return end
  if rcall('HINCRBY', P .. 'sigs', sig, by > 0 and '1' or '-1') <= 0 then rcall('HDEL', P .. 'sigs', sig) end
end

-- Consistent-hash affinity (core/affinity.py holds the same ring in Python; the why is
-- there). The ring is `ring` (members "<agent>#<i>" at their sha1 points), `live` the
-- agents on it by last seen. A task with an affinity key entering queued (unassigned) is
-- routed: to the first live agent clockwise from the key whose capabilities cover its
-- requires, within ${affinity_walk_max} ring points. A routed task waits in `affine:<owner>`
-- (scored like the ready sets) instead of its ready set, and in `steal` until its steal_ms,
-- when steal_due moves it to its ready set for any capable agent (its `owner` field stays,
-- steal_ms becomes 0). Nothing found: the task goes to its ready set at once.
local function ring_point(s)
  return tonumber(string.sub(redis.sha1hex(s), 1, 8), 16)
end

local function ring_join(P, agent)
  for i = 0, ${affinity_vnodes} - 1 do
    local m = agent .. '#' .. i
    rcall('ZADD', P .. 'ring', ring_point(m), m)
  end
end

local function ring_drop(P, agent)
  local ms = {}
  for i = 0, ${affinity_vnodes} - 1 do ms[#ms + 1] = agent .. '#' .. i end
  rcall('ZREM', P .. 'ring', unpack(ms))
  rcall('ZREM', P .. 'live', agent)
end

local function ring_owner(P, key, requires, now)
  local rk = P .. 'ring'
  local pts = rcall('ZRANGE', rk, ring_point(key), '+inf', 'BYSCORE', 'LIMIT', '0', '${affinity_walk_max}')
  if #pts < ${affinity_walk_max} then
    for _, m in ipairs(rcall('ZRANGE', rk, '0', ${affinity_walk_max} - #pts - 1)) do pts[#pts + 1] = m end
  end
  local need, seen = split(requires), {}
  for _, m in ipairs(pts) do
    local a = string.match(m, '^(.*)#%d+$')
    if a and not seen[a] then
      seen[a] = true
      local f = rcall('HMGET', P .. 'agent:' .. a, 'caps', 'last_seen_ms')
      if f[2] and tonumber(f[2]) > now - ${affinity_live_ms} then
        local caps = {}
        for _, c in ipairs(split(f[1])) do caps[c] = true end
        local ok = true
        for _, c in ipairs(need) do
          if not caps[c] then ok = false end
        end
        if ok then return a end
      end
    end
  end
  return nil
end

-- A task field the caller's partial table may lack (cascades build small ones).
local function field_of(P, id, t, name)
  if t[name] == nil then t[name] = rcall('HGET', P .. 'task:' .. id, name) or '' end
  return t[name]
end

-- A task marked `plain` (add-1.lua marks a queued task outside any plan) has, as long as
-- it keeps the mark and is not done, no dependents, no path locks, no plan fields, no
-- result and no reason: its completion reads none of them (complete_reads, complete_task).
-- enter ends the mark on any step but the lean claim and completion (claim_tasks,
-- complete_task; a done task keeps it, with its result: done is final); whoever gives a
-- task dependents, locks or subtasks ends it here. Its value is '=' and the task's
-- `requires` ('=' alone: none), so a completion need not ask for a field most tasks lack
-- (an HMGET walks the whole hash for each); '1', from claimroom before, says nothing.
local function end_plain(P, id)
  rcall('HDEL', P .. 'task:' .. id, 'plain')
end

-- A task joins an agent's won:, assigned: or affine: index: its next claim must look there
-- (claim_tasks skips those three on a record marked `solo`).
local function give_personal(P, key, agent, score, id)
  rcall('ZADD', key, score, id)
  rcall('HDEL', P .. 'agent:' .. agent, 'solo')
end

-- Route a task entering queued, unassigned (see above); steal: its steal time when it is
-- re-routed (its owner left), nil for a fresh one. Returns whether an owner holds it.
local function route(P, id, t, now, steal)
  local key = field_of(P, id, t, 'affinity')
  if key == '' then return false end
  local delay = tonumber(field_of(P, id, t, 'steal_after_ms')) or -1
  if delay < 0 then delay = ${affinity_steal_delay_ms} end
  local owner = nil
  if delay > 0 then owner = ring_owner(P, key, field_of(P, id, t, 'requires'), now) end
  if not owner then
    if steal then rcall('ZREM', P .. 'steal', id) end
    rcall('HSET', P .. 'task:' .. id, 'owner', '', 'steal_ms', '0')
    t.owner, t.steal_ms = '', 0
    return false
  end
  steal = steal or now + delay
  rcall('HSET', P .. 'task:' .. id, 'owner', owner, 'steal_ms', steal)
  t.owner, t.steal_ms = owner, steal
  give_personal(P, P .. 'affine:' .. owner, owner, ready_score(t), id)
  rcall('ZADD', P .. 'steal', steal, id)
  due_at(P, steal)
  announce(P .. 'wake:' .. owner, 'affine')
  return true
end

-- Whether a queued, unassigned task waits for its owner (in affine:<owner>, not ready).
local function waits_for_owner(P, id, t)
  if t.steal_ms == nil and t.affinity == '' then return false end  -- a whole task, not affine
  return (tonumber(field_of(P, id, t, 'steal_ms')) or 0) > 0
end

local function unroute(P, id, t)
  rcall('ZREM', P .. 'affine:' .. field_of(P, id, t, 'owner'), id)
  rcall('ZREM', P .. 'steal', id)
  rcall('HSET', P .. 'task:' .. id, 'steal_ms', '0')
  t.steal_ms = 0
end

-- A blocked task leaving its state ends its bidding window if one is open: its entry in
-- `auctions` and its bids go with it (close_one took them already; an operator's cancel
-- or a claim's rollback has not, and a cancelled task must keep no bids nor window).
local function drop_auction(P, id)
  rcall('ZREM', P .. 'auctions', id)
  rcall('DEL', P .. 'bids:' .. id)
end

-- The agent whose claim ends this call (complete-1.lua, complete_many-1.lua), if it is the
-- one whose claims end in it too: then its `full` flag is read once, by that claim.
local claims_next = nil

-- An agent that a claim found at capacity has room again: say so to its waiting claims.
local function free_room(P, agent, full)
  local ak = P .. 'agent:' .. agent
  if full == nil then full = rcall('HGET', ak, 'full') end
  if full == '1' then
    rcall('HSET', ak, 'full', '0')
    announce(P .. 'wake:' .. agent, 'capacity')
  end
end

-- A claim's end, as far as the indexes of `claimed` go (leave; finish_lean): agent's.
local function leave_claimed(P, id, agent)
  rcall('ZREM', P .. 'deadlines', id)
  rcall('SREM', P .. 'held:' .. agent, id)
  -- Room again for an agent a claim found at capacity: its waiting claims may go on.
  -- (Its claim later in this call looks instead: claim_tasks reads its record anyway.)
  if agent ~= claims_next then free_room(P, agent) end
end

-- Remove a task from the indexes of its current state (popped: see ready_remove).
local function leave(P, id, t, popped)
  local s = t.state
  if s == 'blocked' then
    drop_auction(P, id)
  elseif s == 'queued' then
    if t.assigned and t.assigned ~= '' then
      rcall('ZREM', P .. 'assigned:' .. t.assigned, id)
    elseif waits_for_owner(P, id, t) then
      unroute(P, id, t)
    else
      ready_remove(P, id, t, popped)
    end
  elseif s == 'retrying' then
    rcall('ZREM', P .. 'backoff', id)
  elseif s == 'done' or s == 'cancelled' then
    count_sig(P, t.requires, 1)  -- unfinished again (a cascade's restore)
  elseif s == 'claimed' then
    leave_claimed(P, id, t.agent)
  end
  retention_leave(P, id, t)
  if s ~= 'claimed' then rcall('ZREM', P .. 'state:' .. s, id) end  -- claimed: see enter
  if s == 'done' or s == 'dead' or s == 'cancelled' then later.plan_reopen(P, id) end
end

-- A claim's start, as far as the indexes of `claimed` go (enter; claim_task's lean path):
-- agent's, until `deadline` (ms, as text); until_ms: the same as a number, when the caller
-- has it (a 13-digit text costs tonumber ~1k instructions).
local function enter_claimed(P, id, agent, deadline, until_ms)
  -- With deadlines_keep (core/constants.py), which keeps the index a skiplist, on one claim in
  -- ${upkeep_every} (every_nth; ~1.6k instructions a ZADD).
  if every_nth(keeps, P) then
    rcall('ZADD', P .. 'deadlines', deadline, id, '+inf', ${deadlines_keep})
  else
    rcall('ZADD', P .. 'deadlines', deadline, id)
  end
  due_at(P, until_ms or deadline, deadline)
  rcall('SADD', P .. 'held:' .. agent, id)
end

-- Put a task into a state and that state's indexes. Fields the indexes need (agent and
-- deadline_ms for claimed, ready_ms for retrying) must already be in t. `more`: other
-- field, value pairs to write in the same HSET (also set in t). A '' is not stored (every
-- reader takes a missing field for ''): it deletes a value t holds, so a caller clearing
-- a field must have read it (t whole, or the field named in its HMGET).
local function enter(P, id, t, new, now, more)
  -- Any step but the lean ones ends a task's `plain` mark (end_plain); nil: a partial t.
  local unmark = t.state ~= '' and t.plain ~= false
  t.state, t.updated_ms, more = new, now, more or EMPTY
  local clears = false
  for i = 2, #more, 2 do
    if more[i] == '' then clears = true; break end
  end
  if not clears then
    -- Nothing to clear (a claim's fields, most often): one HSET of them all, no table built.
    rcall('HSET', P .. 'task:' .. id, 'state', new, 'updated_ms', ms(now), unpack(more))
    for i = 1, #more, 2 do t[more[i]] = more[i + 1] end
  else
    local f, gone = {'state', new, 'updated_ms', ms(now)}, nil
    for i = 1, #more, 2 do
      local k, v = more[i], more[i + 1]
      if v ~= '' then
        f[#f + 1] = k
        f[#f + 1] = v
      elseif (rawget(t, k) or '') ~= '' then
        gone = gone or {}
        gone[#gone + 1] = k
      end
      t[k] = v
    end
    rcall('HSET', P .. 'task:' .. id, unpack(f))
    if gone then rcall('HDEL', P .. 'task:' .. id, unpack(gone)) end
  end
  if unmark then
    end_plain(P, id)
    t.plain = nil  -- a whole task's reads false again (task_defaults); no field for fields_of
  end
  -- Each state's tasks in creation order (state:<state>, by seq), but a claimed task's: those
  -- are `deadlines` (by the lease's end), which the reaper needs anyway; one index, not two,
  -- on the path of every claim and completion (core/redis/reads.py reads them so).
  if new ~= 'claimed' then rcall('ZADD', P .. 'state:' .. new, t.seq, id) end
  if new == 'queued' then
    if t.assigned and t.assigned ~= '' then
      give_personal(P, P .. 'assigned:' .. t.assigned, t.assigned, ready_score(t), id)
      announce(P .. 'wake:' .. t.assigned, 'assigned')
    elseif not route(P, id, t, now) then
      ready_add(P, id, t)
    end
  elseif new == 'retrying' then
    rcall('ZADD', P .. 'backoff', t.ready_ms, id)
    due_at(P, t.ready_ms)
  elseif new == 'claimed' then
    enter_claimed(P, id, t.agent, t.deadline_ms)
  elseif new == 'done' or new == 'cancelled' then
    count_sig(P, t.requires, -1)
  end
  retention_enter(P, id, t.queue, new, now)
  if new == 'done' or new == 'dead' or new == 'cancelled' then later.plan_settle(P, id, t, new, now) end
end

-- Path locks. A hold is one (agent, task) pair's hold on a path, task '' when untied, with
-- its own mode and expiry; a path is locked while any hold on it lives. The hash
-- `lock:<path>` has two fields per hold: `h:<key>` its expiry (ms) and `m:<key>` its mode,
-- where key is `<agent>` or `<agent>|<task>` (names and ids never contain '|'). A
-- task-bound hold is also listed in `tasklocks:<task>` as `<agent>|<path>`, and its expiry
-- is its claim's deadline, pushed along by renew_task_locks.
local function hold_key(agent, task)
  if task == '' then return agent end
  return agent .. '|' .. task
end

-- Every hold on a path, live or not, ordered by agent then task (so a refusal names the
-- same holder on every backend). A hash written before holds had modes keeps one `mode`
-- field for the path.
local function holds_on(P, path)
  local h = to_table(rcall('HGETALL', P .. 'lock:' .. path))
  local out = {}
  for field, exp in pairs(h) do
    local key = string.match(field, '^h:(.*)$')
    if key then
      local agent, task = key, ''
      local bar = string.find(key, '|', 1, true)
      if bar then agent, task = string.sub(key, 1, bar - 1), string.sub(key, bar + 1) end
      local mode = h['m:' .. key] or h.mode or 'exclusive'
      out[#out + 1] = {agent = agent, task = task, expires = tonumber(exp), shared = mode == 'shared'}
    end
  end
  table.sort(out, function(a, b)
    if a.agent ~= b.agent then return a.agent < b.agent end
    return a.task < b.task
  end)
  return out
end

-- Drop one hold; the lock goes with its last hold (and with it any field an older
-- claimroom left in the hash).
local function drop_hold(P, path, agent, task)
  local lk = P .. 'lock:' .. path
  local key = hold_key(agent, task)
  if task ~= '' then rcall('SREM', P .. 'tasklocks:' .. task, agent .. '|' .. path) end
  rcall('HDEL', lk, 'h:' .. key, 'm:' .. key)
  if #holds_on(P, path) == 0 then
    rcall('DEL', lk)
    rcall('ZREM', P .. 'locks', path)
    rcall('ZREM', P .. 'lockpaths', path)
  end
end

-- The holds of one claim end with it; returns their paths.
local function release_task_locks(P, id)
  local released = {}
  local entries = rcall('SMEMBERS', P .. 'tasklocks:' .. id)
  if #entries == 0 then return released end
  for _, entry in ipairs(entries) do
    local bar = string.find(entry, '|', 1, true)
    local agent, path = string.sub(entry, 1, bar - 1), string.sub(entry, bar + 1)
    drop_hold(P, path, agent, id)
    released[#released + 1] = path
  end
  rcall('DEL', P .. 'tasklocks:' .. id)
  table.sort(released)
  return released
end

-- Cascades (design note, task states): a task that ends dead or cancelled takes the tasks
-- that depend on it, and theirs, with it in the same step: they could never run. Rule 10
-- bounds the work: one script call looks at no more than ${cascade_batch} tasks this way, and
-- what is left waits in `cascades:cancel` (tasks whose dependents are still to cancel,
-- scored by when they joined) for reap_due, in the next claim or reaper pass, to go on.
-- The walk consumes `dependents:<id>`; a task it cancels records `cancelled_by` (its
-- dependency) and joins `cascaded:<dependency>`, which an operator's retry with restore
-- walks back (leftovers in `cascades:restore`), under the same budget.
local cascade_budget = ${cascade_batch}
local cascade_log = {cancelled = {}, restored = {}}  -- what this call's cascades did (reap reports it)

local function is_over(state)
  return state == 'dead' or state == 'cancelled'
end

-- Why the dependents of x end: "dependency t1 dead", or, when x was itself cancelled by a
-- cascade, "dependency t2 cancelled (t1 dead)": the root cause travels down the chain.
local function cascade_reason(x, state, reason, cancelled_by)
  if cancelled_by and cancelled_by ~= '' then
    local root = string.match(reason or '', '%((.+)%)$') or string.match(reason or '', '^dependency (.+)$')
    if root then return 'dependency ' .. x .. ' cancelled (' .. root .. ')' end
  end
  return 'dependency ' .. x .. ' ' .. state
end

-- The next task a walk visits: from its own queue (the closure of the task that just
-- ended), or, with no task of its own, the oldest one pending in the index.
local function walk_next(index, queue, pos)
  if queue then return queue[pos] end
  return rcall('ZRANGE', index, '0', '0')[1]
end

-- Cancel the blocked dependents of `first`'s closure (or of the oldest pending tasks when
-- first is nil) until the budget is spent. Audits one 'cascade' event (how many, whether
-- more follow) and one 'cancelled' event per task with its reason and dependency.
local function cascade_run(P, now, first)
  local done, more, queue, pos, lead = {}, false, nil, 1, first
  if first then queue = {first} end
  while true do
    local x = walk_next(P .. 'cascades:cancel', queue, pos)
    if not x then break end
    if cascade_budget <= 0 then more = true; break end
    pos, lead = pos + 1, lead or x
    cascade_budget, left_over = cascade_budget - 1, true
    local dk = P .. 'dependents:' .. x
    local xs = rcall('HMGET', P .. 'task:' .. x, 'state', 'reason', 'cancelled_by')
    -- A task retried or requeued meanwhile lives again: what still waits on it keeps waiting.
    if is_over(xs[1]) then
      local why = cascade_reason(x, xs[1], xs[2], xs[3])
      for _, d in ipairs(rcall('SPOP', dk, cascade_budget)) do
        cascade_budget = cascade_budget - 1
        local ds = rcall('HMGET', P .. 'task:' .. d, 'state', 'requires', 'queue', 'plan')
        if ds[1] == 'blocked' then
          -- What enter reads of a task that ends cancelled: count_sig, retention, plan_settle.
          local dt = {state = 'blocked', seq = seq_of(d), requires = ds[2] or '', queue = ds[3], plan = ds[4] or ''}
          leave(P, d, dt)
          rcall('HSET', P .. 'task:' .. d, 'reason', why, 'cancelled_by', x)
          enter(P, d, dt, 'cancelled', now)
          rcall('SADD', P .. 'cascaded:' .. x, d)
          rcall('ZREM', P .. 'cascades:restore', d)
          if rcall('EXISTS', P .. 'dependents:' .. d) == 1 then
            rcall('ZADD', P .. 'cascades:cancel', 'NX', now, d)
            due_at(P, now)
            if queue then queue[#queue + 1] = d end
          end
          done[#done + 1] = {d, why, x}
        end
      end
    end
    if is_over(xs[1]) and rcall('EXISTS', dk) == 1 then
      more = true
      if not queue then break end  -- the budget ran out on the index's oldest
    else
      rcall('ZREM', P .. 'cascades:cancel', x)
    end
  end
  if #done > 0 or more then
    audit(P, now, 'cascade', lead, '', '', {cancelled = #done, more = more})
  end
  for _, r in ipairs(done) do
    audit(P, now, 'cancelled', r[1], '', '', {reason = r[2], after = r[3]})
    cascade_log.cancelled[#cascade_log.cancelled + 1] = r[1]
  end
end

-- Call when task `id` has just ended dead or cancelled (after its own audit event).
local function cascade_cancel(P, id, now)
  rcall('ZREM', P .. 'cascades:restore', id)  -- a restore of its dependents under way stops
  if rcall('EXISTS', P .. 'dependents:' .. id) == 0 then return end
  rcall('ZADD', P .. 'cascades:cancel', 'NX', now, id)
  due_at(P, now)
  cascade_run(P, now, id)
end

-- Put back one task that a cascade from x cancelled, x being alive again: blocked on what
-- is not done yet (queued if nothing), or, when another dependency can still never
-- finish, left cancelled because of that one instead. Returns {id, outcome ('blocked',
-- 'queued' or 'kept'), reason if kept, the dependency it now waits on or is kept for}.
local function restore_one(P, d, x, now, queue)
  local k = P .. 'task:' .. d
  local f = rcall('HMGET', k, 'state', 'cancelled_by', 'after', 'queue', 'requires', 'assigned', 'priority')
  if f[1] ~= 'cancelled' or f[2] ~= x then return nil end
  local waits = {}
  for _, dep in ipairs(split(f[3])) do
    local ds = rcall('HMGET', P .. 'task:' .. dep, 'state', 'reason', 'cancelled_by')
    if not ds[1] or is_over(ds[1]) then
      local why = 'dependency ' .. dep .. ' missing'
      if ds[1] then
        why = cascade_reason(dep, ds[1], ds[2], ds[3])
        rcall('SADD', P .. 'cascaded:' .. dep, d)
      end
      rcall('HSET', k, 'reason', why, 'cancelled_by', dep)
      return {d, 'kept', why, dep}
    end
    if ds[1] ~= 'done' then waits[#waits + 1] = dep end
  end
  -- (each dep lost its `plain` mark when d was first added after it: none is given back)
  for _, dep in ipairs(waits) do rcall('SADD', P .. 'dependents:' .. dep, d) end
  local t = {state = 'cancelled', seq = seq_of(d), queue = f[4], requires = f[5], assigned = f[6], priority = f[7] or '0'}
  leave(P, d, t)
  -- Cleared, not set to '' or 0: a task hash stores no default (enter).
  local clear = {'reason', 'cancelled_by'}
  if #waits > 0 then rcall('HSET', k, 'waiting', #waits) else clear[3] = 'waiting' end
  rcall('HDEL', k, unpack(clear))
  local new = 'blocked'
  if #waits == 0 then new = 'queued' end
  enter(P, d, t, new, now)
  if rcall('EXISTS', P .. 'cascaded:' .. d) == 1 then
    rcall('ZADD', P .. 'cascades:restore', 'NX', now, d)
    due_at(P, now)
    if queue then queue[#queue + 1] = d end
  end
  return {d, new, '', x}
end

-- Restore what cascades from `first` cancelled (and what cascades from those cancelled),
-- or continue the oldest pending restores when first is nil, until the budget is spent.
-- The operator who asked for it, if this call is theirs, is named in its events.
local function restore_run(P, now, first, operator)
  local done, kept, more, queue, pos, lead = {}, 0, false, nil, 1, first
  if first then queue = {first} end
  while true do
    local x = walk_next(P .. 'cascades:restore', queue, pos)
    if not x then break end
    if cascade_budget <= 0 then more = true; break end
    pos, lead = pos + 1, lead or x
    cascade_budget, left_over = cascade_budget - 1, true
    local ck = P .. 'cascaded:' .. x
    local xs = rcall('HGET', P .. 'task:' .. x, 'state')
    local alive = xs and not is_over(xs)
    if alive then
      for _, d in ipairs(rcall('SPOP', ck, cascade_budget)) do
        cascade_budget = cascade_budget - 1
        local r = restore_one(P, d, x, now, queue)
        if r then
          done[#done + 1] = r
          if r[2] == 'kept' then kept = kept + 1 end
        end
      end
    end
    if alive and rcall('EXISTS', ck) == 1 then
      more = true
      if not queue then break end
    else
      rcall('ZREM', P .. 'cascades:restore', x)
    end
  end
  if #done > 0 or more then
    audit(P, now, 'restore', lead, '', '', {restored = #done - kept, kept = kept, more = more}, operator)
  end
  for _, r in ipairs(done) do
    if r[2] == 'kept' then
      audit(P, now, 'not-restored', r[1], '', '', {reason = r[3], after = r[4]}, operator)
    else
      audit(P, now, 'restored', r[1], '', '', {to = r[2], after = r[4]}, operator)
      cascade_log.restored[#cascade_log.restored + 1] = r[1]
    end
  end
end

-- A claim's new deadline is its holds' new expiry: a task-bound lock lives as long as
-- its claim, however often that is heartbeated or extended.
local function renew_task_locks(P, id, deadline)
  for _, entry in ipairs(rcall('SMEMBERS', P .. 'tasklocks:' .. id)) do
    local bar = string.find(entry, '|', 1, true)
    local agent, path = string.sub(entry, 1, bar - 1), string.sub(entry, bar + 1)
    local lk, field = P .. 'lock:' .. path, 'h:' .. hold_key(agent, id)
    -- (an entry an older claimroom left has no such hold: its lock ends by its own ttl)
    if rcall('HEXISTS', lk, field) == 1 then
      rcall('HSET', lk, field, deadline)
      rcall('ZADD', P .. 'locks', 'GT', deadline, path)
    end
  end
end

-- Rule 7: a claim that ends other than by completion gives back its locks and cancels
-- the subtasks it created that nobody has claimed yet. `children:<id>:<token>` holds the
-- subtasks created under that one claim, so the work is that claim's own (rule 10).
local plan_rolling_back = nil  -- the planner whose claim rollback is running (plan_settle)
local function rollback(P, id, t, now)
  plan_rolling_back, left_over = id, true
  rcall('HDEL', P .. 'task:' .. id, 'plan_failed')  -- its plan starts over with the next planner
  local locks = release_task_locks(P, id)
  local cancelled = {}
  local spawned = P .. 'children:' .. id .. ':' .. t.token
  for _, cid in ipairs(rcall('SMEMBERS', spawned)) do
    local c = load_task(P, cid)
    if c and c.spawn_token == t.token and tonumber(c.attempts or 0) == 0
        and (c.state == 'queued' or c.state == 'blocked' or c.state == 'retrying') then
      leave(P, cid, c)
      rcall('HSET', P .. 'task:' .. cid, 'reason', 'rollback of ' .. id)
      enter(P, cid, c, 'cancelled', now)
      audit(P, now, 'cancelled', cid, '', '', {reason = 'rollback', parent = id})
      cancelled[#cancelled + 1] = cid
    end
  end
  -- After the loop: a subtask that waits on another one being rolled back is cancelled
  -- as rolled back itself, not as a dependent.
  for _, cid in ipairs(cancelled) do cascade_cancel(P, cid, now) end
  rcall('DEL', spawned)
  plan_rolling_back = nil
  return {locks = locks, cancelled = cancelled}
end

local function agent_failed(P, agent, now)
  local ak = P .. 'agent:' .. agent
  if rcall('EXISTS', ak) == 0 then return end
  local n = rcall('HINCRBY', ak, 'consecutive_failures', '1')
  if n >= ${breaker_threshold} then
    local was = tonumber(rcall('HGET', ak, 'breaker_open_until_ms') or 0)
    rcall('HSET', ak, 'breaker_open_until_ms', now + ${breaker_cooldown_ms})
    if was <= now then
      audit(P, now, 'breaker-opened', '', agent, '', {failures = n, until_ms = now + ${breaker_cooldown_ms}})
    end
  end
end

-- An expired lease (rule 5): early work back to queued, late work orphaned, and the
-- lease-expiry cap ends a task that keeps killing its agents (rule 6).
local function expire_one(P, id, t, now)
  local expiries = tonumber(t.expiries or 0) + 1
  local progress = tonumber(t.progress or 0)
  leave(P, id, t)
  local rb = rollback(P, id, t, now)
  agent_failed(P, t.agent, now)
  local outcome = 'orphaned'
  if expiries >= ${max_lease_expiries} then
    outcome = 'dead'
    rcall('HSET', P .. 'task:' .. id, 'reason', 'lease-expired')
  elseif progress < ${late_stage_progress} then
    outcome = 'queued'
  end
  rcall('HSET', P .. 'task:' .. id, 'expiries', expiries)
  enter(P, id, t, outcome, now)
  audit(P, now, 'expired', id, t.agent, t.token, {
    outcome = outcome, progress = progress, expiries = expiries,
    locks = rb.locks, cancelled = rb.cancelled})
  if outcome == 'dead' then cascade_cancel(P, id, now) end
  return outcome
end

local function reap_due(P, now)
  local out = {}
  local ids = rcall('ZRANGEBYSCORE', P .. 'deadlines', '-inf', now, 'LIMIT', '0', '${reap_batch}')
  for _, id in ipairs(ids) do
    local t = load_task(P, id)
    if t and t.state == 'claimed' then
      out[#out + 1] = {id, expire_one(P, id, t, now)}
    else
      rcall('ZREM', P .. 'deadlines', id)
    end
  end
  -- Cascades and restores that did not fit in the call that started them go on here.
  cascade_run(P, now, nil)
  restore_run(P, now, nil)
  return out
end

-- Retrying tasks whose backoff ended become claimable.
local function promote_due(P, now)
  local out = {}
  local ids = rcall('ZRANGEBYSCORE', P .. 'backoff', '-inf', now, 'LIMIT', '0', '${reap_batch}')
  for _, id in ipairs(ids) do
    local t = load_task(P, id)
    if t and t.state == 'retrying' then
      leave(P, id, t)
      enter(P, id, t, 'queued', now)
      audit(P, now, 'ready', id, '', '', {after = 'backoff'})
      out[#out + 1] = id
    else
      rcall('ZREM', P .. 'backoff', id)
    end
  end
  return out
end

-- The fields a completion's path reads (complete_task and what it calls in lib: leave,
-- plan_complete, enter, count_sig, retention_enter, plan_settle; a claimed task has no
-- `assigned`), or nil when there is no such task. A missing field is absent from t, as
-- with HGETALL: result and reason too, which enter deletes when this writes '' (a lean hash
-- stores no ''). Built whole by one constructor, which sizes the table once (a table
-- filled a field at a time is rehashed as it grows). v: the first HMGET's reply, when the
-- caller made it (complete_task).
local function complete_reads(P, id, v)
  local tk = P .. 'task:' .. id
  v = v or rcall('HMGET', tk, 'plain', 'state', 'token', 'agent', 'deadline_ms', 'queue')
  if not v[2] then return nil end
  local plain = v[1] or false
  local t = {plain = plain, state = v[2], token = v[3] or nil, agent = v[4] or nil, deadline_ms = v[5] or nil,
    seq = seq_of(id), queue = v[6] or nil, requires = plain and string.sub(plain, 2) or nil}
  if not plain then
    -- Not plain: these may be there. (Asking for a field a hash lacks walks all of it: a
    -- plain task's completion asks for none, ~20k instructions less.)
    local w = rcall('HMGET', tk, 'requires', 'plan', 'plan_failed', 'plan_left', 'reason', 'result')
    t.requires, t.plan, t.plan_failed, t.plan_left, t.reason, t.result = w[1] or nil, w[2] or nil, w[3] or nil,
      w[4] or nil, w[5] or nil, w[6] or nil
  elseif plain == '1' then  -- marked by claimroom before: it does not say
    t.requires = rcall('HGET', tk, 'requires') or nil
  end
  return t
end

-- The checks every agent action on a claimed task starts with (rule 2). A lease whose
-- deadline passed is expired here and now, exactly as the reaper would. `agent` (not ''),
-- the caller acting as that agent (core/acting.py): a claim of another agent is refused
-- before anything happens to it, expiry included (rule 11).
-- lean: read only the fields a completion's path reads (complete_reads) rather than the
-- whole task: ~30 fields through HGETALL cost Redis ~75k instructions, a dozen through
-- HMGET ~20k. v: complete_reads' first reply, when the caller has it.
local function check_lease(P, id, token, now, agent, lean, v)
  local t
  if lean then
    t = complete_reads(P, id, v)
  else
    t = load_task(P, id)
  end
  if not t then return nil, {-1, id} end
  if t.state ~= 'claimed' or t.token ~= token then return nil, {-2, id} end
  if agent and agent ~= '' and t.agent ~= agent then return nil, {-9, 'claim', id, t.agent, agent} end
  if passed(t.deadline_ms, now) then
    if lean then t = load_task(P, id) end  -- an expiry reads the whole task
    expire_one(P, id, t, now)
    return nil, {-2, id}
  end
  return t, nil
end

-- An agent's completion: seen now, and its run of failures ended (the breaker's count).
-- complete-1.lua and complete_many-1.lua write it once per call; when the call claims next,
-- touch_agent's reset writes it instead, in the same HSET as the claim's sighting.
local function agent_completed(P, agent, now)
  rcall('HSET', P .. 'agent:' .. agent, 'consecutive_failures', '0', 'last_seen_ms', ms(now))
end

-- reset: its consecutive failures end too (a completion's, written here in the same HSET
-- when the completion claims next). touched_s: the second (of the clock) this last ran in:
-- claim_tasks skips it within the same second, so an agent's record and place on the ring
-- are written at most once a second (compared as text: no tonumber). Other writers of
-- last_seen_ms leave `live` as it is.
local function touch_agent(P, agent, now, reset)
  local ak = P .. 'agent:' .. agent
  local at, second = ms(now), now == clock and clock_s or int_text(math.floor(now / 1000))
  if reset then
    rcall('HSET', ak, 'last_seen_ms', at, 'touched_s', second, 'consecutive_failures', '0')
  else
    rcall('HSET', ak, 'last_seen_ms', at, 'touched_s', second)
  end
  if rcall('ZADD', P .. 'live', at, agent) == 1 then
    ring_join(P, agent)
    due_at(P, now + ${affinity_live_ms})  -- a sighting moved later needs nothing here
  end
end

-- Tasks whose owner did not claim them within their steal delay become anyone's.
local function steal_due(P, now)
  for _, id in ipairs(rcall('ZRANGEBYSCORE', P .. 'steal', '-inf', now, 'LIMIT', '0', '${reap_batch}')) do
    local t = load_task(P, id)
    if t and t.state == 'queued' and (t.assigned or '') == '' and waits_for_owner(P, id, t) then
      unroute(P, id, t)
      ready_add(P, id, t)
    else
      rcall('ZREM', P .. 'steal', id)
    end
  end
end

-- Agents not seen within the live window leave the ring (at most ${affinity_leave_batch} a
-- call); up to ${affinity_move_batch} of each one's waiting tasks go to their keys' new
-- owners, keeping their steal time (the rest become anyone's at theirs). Returns the agents.
local function ring_reap(P, now)
  local gone = rcall('ZRANGEBYSCORE', P .. 'live', '-inf', now - ${affinity_live_ms}, 'LIMIT', '0', '${affinity_leave_batch}')
  for _, a in ipairs(gone) do
    ring_drop(P, a)
    local ak = P .. 'affine:' .. a
    for _, id in ipairs(rcall('ZRANGE', ak, '0', ${affinity_move_batch} - 1)) do
      rcall('ZREM', ak, id)
      local t = load_task(P, id)
      if t and t.state == 'queued' and (t.assigned or '') == '' and waits_for_owner(P, id, t) then
        if not route(P, id, t, now, tonumber(t.steal_ms)) then ready_add(P, id, t) end
      end
    end
  end
  return gone
end

-- Operator actions are compare-and-set on what the operator saw: the task's state and
-- token when the dialog opened. Anything else means someone moved it meanwhile.
local function check_seen(P, id, seen_state, seen_token)
  local t = load_task(P, id)
  if not t then return nil, {-1, id} end
  if t.state ~= seen_state or tostring(tonumber(t.token) or 0) ~= seen_token then return nil, {-4, id} end
  return t, nil
end

-- Take a task out of its state for an operator; a live claim is rolled back (rule 7).
local function take_out(P, id, t, now)
  local was_claimed = t.state == 'claimed'
  leave(P, id, t)
  if was_claimed then return rollback(P, id, t, now) end
  return {locks = {}, cancelled = {}}
end

-- Bidding (core/bidding.py). A task with a bid window (`bid_window_ms`) opens it once, when
-- it becomes ready: it stays blocked, its close time on the task (`bid_close_ms`) and in
-- `auctions` (task ids by close time); bids wait in `bids:<id>` (agent -> "cost|at_ms|ttl_ms").
-- The window is closed by close_auctions, in every claim and reaper pass, on this clock.
-- `after`: the dependency whose completion made it ready ('' none).
local function open_auction(P, id, now, window, after)
  local close = now + tonumber(window)
  rcall('HSET', P .. 'task:' .. id, 'bid_close_ms', close)
  rcall('ZADD', P .. 'auctions', close, id)
  due_at(P, close)
  local data = {close_ms = close}
  if after ~= '' then data.after = after end
  audit(P, now, 'auction-opened', id, '', '', data)
end

-- Why `agent` may not take task t now (nil: it may): not registered, breaker open, lacking
-- a capability t needs, or (room) without room for one more claim.
local function cannot_take(P, agent, t, now, room)
  local a = rcall('HMGET', P .. 'agent:' .. agent, 'name', 'caps', 'max_claims', 'breaker_open_until_ms')
  if not a[1] then return 'not registered' end
  if tonumber(a[4] or 0) > now then return 'breaker open' end
  local caps = {}
  for _, c in ipairs(split(a[2])) do caps[c] = true end
  for _, c in ipairs(split(t.requires)) do
    if not caps[c] then return 'lacks capability ' .. c end
  end
  if room and rcall('SCARD', P .. 'held:' .. agent) >= tonumber(a[3] or 1) then return 'at capacity' end
  return nil
end

-- The end of one window: the best bid whose agent can still take the task wins the claim
-- (lowest cost, then earliest, then name: bidding.rank), the others ahead of it are passed
-- over; no such bid: the task goes to its queue. Returns the winner ('' none).
local function close_one(P, id, t, now)
  local raw = rcall('HGETALL', P .. 'bids:' .. id)
  rcall('DEL', P .. 'bids:' .. id)
  local bids = {}
  for i = 1, #raw, 2 do
    local c, at, ttl = string.match(raw[i + 1], '^([^|]+)|(%d+)|(%d+)$')
    if c then bids[#bids + 1] = {agent = raw[i], cost = tonumber(c), at = tonumber(at), ttl = tonumber(ttl)} end
  end
  table.sort(bids, function(x, y)
    if x.cost ~= y.cost then return x.cost < y.cost end
    if x.at ~= y.at then return x.at < y.at end
    return x.agent < y.agent
  end)
  local passed, win = {}, nil
  for _, b in ipairs(bids) do
    local why = cannot_take(P, b.agent, t, now, true)
    if not why then win = b; break end
    passed[#passed + 1] = {agent = b.agent, reason = why}
  end
  leave(P, id, t)
  local data = {bids = #bids}
  if #passed > 0 then data.passed = passed end
  if not win then
    data.to = 'queued'
    enter(P, id, t, 'queued', now)
    audit(P, now, 'auction-closed', id, '', '', data)
    return ''
  end
  local token = next_token(P, now)
  local attempts = tonumber(t.attempts or 0) + 1
  t.agent, t.deadline_ms = win.agent, now + win.ttl
  enter(P, id, t, 'claimed', now, {'agent', win.agent, 'token', token, 'deadline_ms', t.deadline_ms,
    'claimed_ms', now, 'ttl_ms', win.ttl, 'attempts', attempts, 'assigned', '', 'bid_winner', win.agent})
  give_personal(P, P .. 'won:' .. win.agent, win.agent, token, id)
  data.to, data.winner, data.cost = 'claimed', win.agent, win.cost
  audit(P, now, 'auction-closed', id, win.agent, token, data)
  audit(P, now, 'claimed', id, win.agent, token, {deadline_ms = t.deadline_ms, attempt = attempts, auction = true})
  announce(P .. 'wake:' .. win.agent, 'won')
  return win.agent
end

-- Close the windows whose time is up, at most ${auction_batch} per call (rule 10; the next
-- claim or reaper pass goes on). An entry whose task left its window meanwhile (an
-- operator's cancel) is dropped with its bids.
local auction_log = {}  -- the tasks whose window this call closed (reap reports them)
local function close_auctions(P, now)
  for _, id in ipairs(rcall('ZRANGEBYSCORE', P .. 'auctions', '-inf', now, 'LIMIT', '0', '${auction_batch}')) do
    rcall('ZREM', P .. 'auctions', id)
    local t = load_task(P, id)
    if t and t.state == 'blocked' and tonumber(t.waiting or 0) <= 0 then
      close_one(P, id, t, now)
      auction_log[#auction_log + 1], left_over = id, true
    else
      rcall('DEL', P .. 'bids:' .. id)
    end
  end
end

-- Everything that fell due by now, as far as one call's budgets go, then `due` set from
-- what is left (see due_at). A claim sweeps only once `due` says so (or is missing: a board
-- written before it, or just imported); the reaper pass (always) sweeps every time.
-- Returns {expired (id, outcome pairs), promoted ids}, or nil when nothing was due.
local function sweep_due(P, now, always)
  if not always then
    local at = rcall('GET', P .. 'due:at')
    if at and (at == 'inf' or not passed(at, now)) then
      due_text = at  -- for due_at
      return nil
    end
  end
  local out = {reap_due(P, now), promote_due(P, now)}
  close_auctions(P, now)
  steal_due(P, now)
  ring_reap(P, now)
  local next = nil
  local function head(key, later)
    local h = rcall('ZRANGE', key, '0', '0', 'WITHSCORES')
    if #h > 0 and h[2] ~= 'inf' and (not next or tonumber(h[2]) + later < next) then next = tonumber(h[2]) + later end
  end
  for _, key in ipairs({P .. 'deadlines', P .. 'backoff', P .. 'auctions', P .. 'steal',
      P .. 'cascades:cancel', P .. 'cascades:restore'}) do
    head(key, 0)
  end
  head(P .. 'live', ${affinity_live_ms})
  rcall('SET', P .. 'due:at', next and string.format('%d', next) or 'inf')
  due_seen = next or math.huge
  return out
end

-- Claims `agent` won and was not handed yet, at most `count`: each task's id and fields (flat),
-- when the claim is still the won one; every entry looked at leaves `won:<agent>`.
local function won_claims(P, agent, count, now)
  local out = {}
  local wk = P .. 'won:' .. agent
  local entries = rcall('ZRANGE', wk, '0', count - 1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local id = entries[i]
    rcall('ZREM', wk, id)
    local raw = rcall('HGETALL', P .. 'task:' .. id)
    local t = to_table(raw)
    if t.state == 'claimed' and t.agent == agent and tonumber(t.token) == tonumber(entries[i + 1])
        and tonumber(t.deadline_ms) > now then
      out[#out + 1] = id
      out[#out + 1] = raw
    end
  end
  return out
end


-- The tasks waiting on `id` (just done) that waited only on it: each becomes queued
-- (audited 'ready'), or, with a bid window, has its window opened (it stays blocked:
-- bidding first). Returns the ids made ready.
local function unblock_dependents(P, id, now)
  local out = {}
  for _, d in ipairs(rcall('SMEMBERS', P .. 'dependents:' .. id)) do
    local dt = load_task(P, d)
    if dt and dt.state == 'blocked' then
      if rcall('HINCRBY', P .. 'task:' .. d, 'waiting', '-1') <= 0 then
        if tonumber(dt.bid_window_ms or 0) > 0 and (dt.bid_close_ms or '') == '' then
          open_auction(P, d, now, dt.bid_window_ms, id)
        else
          leave(P, d, dt)
          enter(P, d, dt, 'queued', now)
          audit(P, now, 'ready', d, '', '', {after = id})
          out[#out + 1] = d
        end
      end
    end
  end
  return out
end

-- A completion that changes nothing but the task itself (no dependents, locks, plan nor
-- earlier outcome; not for review): the writes of leave (claimed) and finish_done (enter
-- done), less their walk through every state and case: ~10k of the ~215k instructions a
-- completion costs Redis (bench/script_cost.py). tests/test_complete_paths.py holds this
-- path and theirs to one board. tk: its key; agent: its holder; sig, queue: the task's
-- requires and queue.
local function finish_lean(P, tk, id, agent, token, result, sig, queue, now)
  leave_claimed(P, id, agent)
  local at = ms(now)
  -- Its event, indexed in the hash (index_event says why; done is final: written once).
  local eid = lease_event(P, at, 'completed', id, agent, token, '{"locks":{}}')  -- as cjson spells it
  if result == '' then
    rcall('HSET', tk, 'state', 'done', 'updated_ms', at, 'done_eid', eid)
  else
    rcall('HSET', tk, 'state', 'done', 'updated_ms', at, 'done_eid', eid, 'result', result)
  end
  rcall('ZADD', P .. 'state:done', seq_of(id), id)
  count_sig(P, sig, -1)
  retention_enter(P, id, queue, 'done', now)
end

-- A task becoming done: its result fields written, its dependents unblocked; returns the
-- ids made ready. The one path to done, shared by a completion (complete-1.lua) and an
-- accepted review (review-1.lua): `t` has left its state already (leave). (A plan's parent
-- that its last subtask finishes is done through plan_settle, which unblocks the same way.)
-- lone: the caller knows nothing depends on it (no dependents set to read).
local function finish_done(P, id, t, now, more, lone)
  enter(P, id, t, 'done', now, more)
  if lone then return EMPTY end
  return unblock_dependents(P, id, now)
end

-- Hierarchical plans (core/plan.py). A plan's parent is not work: it waits `blocked` with
-- plan_wait = 1 (never claimable, never waiting on dependencies) until its subtasks end.
-- Its hash counts them: plan_left (unfinished subtasks), plan_total (ever added); a subtask
-- names its parent in `plan`. plan_failed holds why the parent must die when a subtask
-- ended dead or cancelled while its planner still held the claim. Each subtask that
-- finishes costs its parent O(1) (rule 10); a parent that ends rolls up into its own parent
-- in turn, at most ${max_plan_depth} levels (add-1.lua refuses deeper plans).

-- Subtask `id` has just entered `new` (done, dead or cancelled): its parent counts one
-- fewer unfinished subtask; when that was the last, a waiting parent is done; a subtask
-- that ended dead or cancelled ends a waiting parent dead (after the subtask's own
-- cascade), naming it and its reason, and the parent's dependents cascade in turn.
-- The parent's other unfinished subtasks are left as they are.
local function plan_settle(P, id, t, new, now)
  local pid = t.plan  -- set when the task is added, never changed: t has it
  if not pid or pid == '' then return end
  local p = load_task(P, pid)
  if not p then return end  -- retention removed it (a parent that died long ago)
  local left = rcall('HINCRBY', P .. 'task:' .. pid, 'plan_left', '-1')
  local waits = p.state == 'blocked' and p.plan_wait == '1'
  if new == 'done' then
    if waits and left <= 0 then
      leave(P, pid, p)
      enter(P, pid, p, 'done', now, {'plan_wait', 0})
      audit(P, now, 'plan-done', pid, '', '', {after = id})
      unblock_dependents(P, pid, now)
    end
    return
  end
  local verb = 'cancelled'
  if new == 'dead' then verb = 'died' end
  -- Read, not taken from t: some callers write the reason before calling enter.
  local why = 'subtask ' .. id .. ' ' .. verb .. ': ' .. (rcall('HGET', P .. 'task:' .. id, 'reason') or '')
  if waits then
    leave(P, pid, p)
    enter(P, pid, p, 'dead', now, {'plan_wait', 0, 'reason', why})
    audit(P, now, 'plan-dead', pid, '', '', {reason = why, subtask = id})
    cascade_cancel(P, pid, now)
  elseif p.state == 'claimed' and plan_rolling_back ~= pid then
    rcall('HSETNX', P .. 'task:' .. pid, 'plan_failed', why)  -- the first one's reason
  end
end

-- Subtask `id` leaves a finished state (an operator's retry, a restore): unfinished again.
local function plan_reopen(P, id)
  local pid = rcall('HGET', P .. 'task:' .. id, 'plan')
  if pid and pid ~= '' and rcall('EXISTS', P .. 'task:' .. pid) == 1 then
    rcall('HINCRBY', P .. 'task:' .. pid, 'plan_left', '1')
  end
end

-- A planner completing its claim on plan parent `id` (t its fields, already out of
-- `claimed`): the parent dies when a subtask already ended dead or cancelled, waits
-- blocked while subtasks are unfinished; else nil (an ordinary completion).
local function plan_complete(P, id, t, now, result)
  if t.plan_failed and t.plan_failed ~= '' then
    enter(P, id, t, 'dead', now, {'result', result, 'reason', t.plan_failed, 'plan_failed', ''})
    return 'dead'
  end
  if tonumber(t.plan_left or 0) > 0 then
    enter(P, id, t, 'blocked', now, {'result', result, 'plan_wait', 1})
    return 'blocked'
  end
  return nil
end

later.plan_settle, later.plan_reopen = plan_settle, plan_reopen

-- complete-1.lua's work for one task (its header says what), shared with complete_many-1.lua.
-- Returns {0, unblocked ids...} and the task's agent, or the refusal ({-1, id}, {-2, id},
-- {-9, ...}: nothing changed). The agent's own record (consecutive failures, last seen) is
-- the caller's to write, once per call however many tasks it completes.
local function complete_task(P, id, token, result, agent, ref, now)
  -- Only the fields this path reads, with HMGET, not HGETALL (complete_reads).
  local tk = P .. 'task:' .. id
  local v = rcall('HMGET', tk, 'plain', 'state', 'token', 'agent', 'deadline_ms', 'queue')
  local plain, holder = v[1], v[4]
  -- Most completions: a task marked plain ('=' and its requires: end_plain), so with no
  -- dependents, locks, plan nor earlier outcome, its lease live and the caller's, not for
  -- review: check_lease's checks on the fields as read, and finish_lean, with no table of
  -- the task built (~50 Lua steps less).
  if plain and plain ~= '1' and ref == '' and v[2] == 'claimed' and v[3] == token and (holder == agent or (agent or '') == '')
      and not passed(v[5], now) then
    finish_lean(P, tk, id, holder, token, result, string.sub(plain, 2), v[6], now)
    return DONE, holder
  end
  local t, err = check_lease(P, id, token, now, agent, true, v)
  if not t then return err end
  -- A plain task has neither dependents nor locks (end_plain). Else one command says
  -- whether it has, instead of reading both sets (~6k instructions each, empty or not).
  local linked = not t.plain and rcall('EXISTS', P .. 'dependents:' .. id, P .. 'tasklocks:' .. id) > 0
  if ref == '' and (t.plain or not linked and not (t.plan or t.plan_left or t.plan_failed or t.result or t.reason)) then
    finish_lean(P, tk, id, t.agent, token, result, t.requires, t.queue, now)
    return DONE, t.agent
  end
  leave(P, id, t)
  local out = {0}
  -- A plan's parent whose planner completes it while subtasks are unfinished waits for them
  -- (or dies, when one of them already died): neither done nor delivered yet.
  local planned = plan_complete(P, id, t, now, result)
  -- Only what changes: a lean hash has no result or reason to clear, most often. (A done
  -- task's progress reads 1, stored or not: none is written.)
  local fields = {}
  if result ~= '' or t.result then fields[1], fields[2] = 'result', result end
  if t.reason then fields[#fields + 1], fields[#fields + 2] = 'reason', '' end
  if planned then
    ref = ''
  elseif ref ~= '' then
    fields[#fields + 1] = 'progress'; fields[#fields + 1] = '1'
    fields[#fields + 1] = 'review_ref'; fields[#fields + 1] = ref
    fields[#fields + 1] = 'review_ms'; fields[#fields + 1] = ms(now)
    enter(P, id, t, 'review', now, fields)
  else
    for _, d in ipairs(finish_done(P, id, t, now, fields, not linked)) do out[#out + 1] = d end
  end
  local locks = linked and release_task_locks(P, id) or EMPTY
  if ref ~= '' then
    audit(P, now, 'delivered', id, t.agent, token, {ref = ref, locks = locks})
  elseif #locks == 0 and not planned then
    audit(P, now, 'completed', id, t.agent, token, '{"locks":{}}')  -- as cjson spells it
  else
    audit(P, now, 'completed', id, t.agent, token, {locks = locks, plan = planned})
  end
  if planned == 'dead' then
    audit(P, now, 'plan-dead', id, '', '', {reason = t.reason})
    cascade_cancel(P, id, now)
  end
  return out, t.agent
end

-- Whether an agent holding caps (a set) can take work needing sig ("a,b").
local function can_take(caps, sig)
  if sig == '' then return true end
  for _, c in ipairs(split(sig)) do
    if not caps[c] then return false end
  end
  return true
end

-- The best head among the open queues (queues: the chosen ones, nil all) with ready tasks
-- needing exactly sig: its score and queue, or nil; and the runner-up queue's head score
-- (nil: none), which the tasks a claim takes from that queue may not pass (claim_tasks).
-- unranked: the caller has no other signature's head nor an owned task to compare with:
-- when only one queue has a head, its score is 0 (Redis 7.0 spells a score in a reply with
-- "%.17g", ~3k instructions, and Lua reads it back with strtod).
local function claim_head(P, sig, queues, unranked)
  if unranked and not queues then
    local head = rcall('ZRANGE', P .. 'heads:' .. sig, '0', '1')
    if #head == 0 then return nil, nil, nil end
    if #head == 1 then return 0, head[1], nil end
    -- a runner-up queue: the scores decide after all
  end
  if queues then
    local scores = rcall('ZMSCORE', P .. 'heads:' .. sig, unpack(queues))
    local best, from, second = nil, nil, nil
    for i = 1, #queues do
      local sc = scores[i] and tonumber(scores[i])
      if sc and (not best or sc < best) then
        best, from, second = sc, queues[i], best
      elseif sc and (not second or sc < second) then
        second = sc
      end
    end
    return best, from, second
  end
  local head = rcall('ZRANGE', P .. 'heads:' .. sig, '0', '1', 'WITHSCORES')
  if #head > 0 then return tonumber(head[2]), head[1], head[4] and tonumber(head[4]) end
  return nil, nil, nil
end

-- Affinity: the best task waiting for `agent` as its owner, its score and id, or nil: the
-- first of its owner index (at most ${affinity_scan_max} looked at) in a chosen (queues, nil
-- all), open queue that it can take (its capabilities may have changed since the task was
-- routed).
local function own_head(P, agent, queues, caps)
  local got = rcall('ZRANGE', P .. 'affine:' .. agent, '0', ${affinity_scan_max} - 1, 'WITHSCORES')
  for i = 1, #got, 2 do
    local f = rcall('HMGET', P .. 'task:' .. got[i], 'queue', 'requires')
    local chosen = not queues
    for _, q in ipairs(queues or EMPTY) do
      if q == f[1] then chosen = true end
    end
    if f[1] and chosen and rcall('SISMEMBER', P .. 'paused', f[1]) == 0 and can_take(caps, f[2] or '') then
      return tonumber(got[i + 1]), got[i]
    end
  end
  return nil, nil
end

-- A claimed task in a claim's reply: its id, how many fields (names and values) it has,
-- then all of them in one text joined by \31 (the ASCII unit separator). Three reply
-- elements instead of ~36, each of which costs Redis ~1k instructions to write
-- (luaReplyToRedisReply); table.concat joins them for a few. No stored text holds \31:
-- every text field refuses control characters (core/safetext.py) and JSON escapes them.
-- One written by hand anyway splits into another count, and the client reads the task
-- again instead (core/redis/store.py _claims).
-- after: text of more fields to follow flat's (joined by \31 as well), with how many there
-- are (n_after). It joins them as flat's last element, in one table.concat: one text of a
-- few hundred bytes made, not two (flat is the caller's to give up).
local function reply_task(out, id, flat, after, n_after)
  out[#out + 1] = id
  if after then
    local n = #flat
    flat[n + 1] = after
    out[#out + 1] = n + n_after
    out[#out + 1] = table.concat(flat, '\31')
  else
    out[#out + 1] = #flat
    out[#out + 1] = table.concat(flat, '\31')
  end
end

-- A claimed task's fields as HGETALL would give them now, built from what was written,
-- less the empty ones (the client reads a missing field as empty: Task.from_fields): each
-- reply element costs Redis ~1k instructions. (A task popped from its ready set goes back
-- as read, with what the claim wrote after it instead: see claim_tasks.)
local function fields_of(t)
  local flat = {}
  for k, v in pairs(t) do
    if v ~= '' then
      flat[#flat + 1] = k
      flat[#flat + 1] = v
    end
  end
  return flat
end

-- What claim_tasks found per signature, by position 1..n of its call (entries past n are an
-- earlier call's, never read): kept from call to call, as a table made per call costs
-- Redis ~2k instructions to build and collect, four on every claim.
local sig_of, score_of, queue_of, runner_of = {}, {}, {}, {}

-- A claim that found nothing: {1, reason, next_change_in_ms, caps} after what out holds.
local function claim_miss(out, reason, wait, caps)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = 1, reason, wait, caps
  return out
end

-- A claim that found nothing ready it can take: claim_miss with how long until a lease or
-- backoff next ends, or a task waiting for its owner becomes anyone's (-1: none pending).
local function claim_empty(P, out, now, caps)
  local next_change = -1
  for _, key in ipairs({P .. 'deadlines', P .. 'backoff', P .. 'steal'}) do
    local head = rcall('ZRANGE', key, '0', '0', 'WITHSCORES')
    if #head > 0 and head[2] ~= 'inf' then  -- deadlines_keep alone: no lease
      local wait = math.max(0, tonumber(head[2]) - now)
      if next_change < 0 or wait < next_change then next_change = wait end
    end
  end
  return claim_miss(out, 'empty', next_change, caps)
end

-- One task a claim took out of its index (best): claimed for agent, its reply appended to out.
-- false when there was nothing to claim after all (its hash gone). from: the signature of
-- the ready set it came out of (ZPOPMIN), or nil: the agent's own (assigned or owned).
-- until_ms: the lease's end, deadline the same as text, ttl_text its length (as small_int
-- spells it). claim_tasks's two ways to choose a task end here: the writes are in one place.
local function claim_task(P, out, best, from, agent, now, until_ms, deadline, ttl_text)
  -- Most claims: a queued task out of its ready set, neither assigned nor waiting for an
  -- owner (lean_read). Its indexes are then state:queued alone, and those of `claimed`:
  -- the writes of leave and enter without their walk through every state and case.
  -- tests/test_complete_paths.py holds this path and theirs to one board.
  local tk = P .. 'task:' .. best
  local raw = rcall('HGETALL', tk)
  local t = from and #raw > 0 and lean_read(raw) or nil
  local lean = t ~= nil
  if not lean and #raw > 0 then t = task_of(raw, best) end
  if not t and not from then rcall('ZREM', P .. 'affine:' .. agent, best) end
  if t then
    if lean then
      rcall('ZREM', P .. 'state:queued', best)
    else
      leave(P, best, t, from ~= nil)
    end
    local token = next_token(P, now)
    local attempts = t.attempts == '0' and '1' or int_text(tonumber(t.attempts) + 1)  -- a first claim's: '1'
    local at, more = ms(now), nil
    local data, eid = '{"deadline_ms":' .. deadline .. ',"attempt":' .. attempts .. '}', nil
    -- Its lease's length at the stored default (task_defaults) is not written, unless the
    -- hash holds another from before.
    local ttl_kept = ttl_text ~= ${stored_ttl_ms} or rawget(t, 'ttl_ms')
    if lean then
      -- Its event, indexed in the hash (index_event says why); an earlier claim's, kept
      -- there until now (a task claimed again), moves to the list.
      eid = lease_event(P, at, 'claimed', best, agent, token, data)
      if t.claim_eid then index_event(P, best, t.claim_eid) end
      -- What enter writes below (more), spelled out: no table to build.
      if ttl_kept then
        rcall('HSET', tk, 'state', 'claimed', 'updated_ms', at, 'agent', agent, 'token', token,
          'deadline_ms', deadline, 'claimed_ms', at, 'ttl_ms', ttl_text, 'attempts', attempts, 'claim_eid', eid)
      else
        rcall('HSET', tk, 'state', 'claimed', 'updated_ms', at, 'agent', agent, 'token', token,
          'deadline_ms', deadline, 'claimed_ms', at, 'attempts', attempts, 'claim_eid', eid)
      end
      enter_claimed(P, best, agent, deadline, until_ms)
    else
      more = {'agent', agent, 'token', token, 'deadline_ms', deadline, 'claimed_ms', at, 'attempts', attempts}
      if ttl_kept then more[#more + 1], more[#more + 2] = 'ttl_ms', ttl_text end
      if (rawget(t, 'assigned') or '') ~= '' then  -- an operator's reassignment ends with the claim
        more[#more + 1], more[#more + 2] = 'assigned', ''
      end
      enter(P, best, t, 'claimed', now, more)
      audit_lease(P, now, 'claimed', best, agent, token, data)
    end
    -- Out of its ready set, it changed only by what was written: the fields as read, then
    -- those (a later pair wins in the client), rather than every field rebuilt from t.
    if lean then
      reply_task(out, best, raw, 'state\31claimed\31updated_ms\31' .. at .. '\31agent\31' .. agent .. '\31token\31'
        .. token .. '\31deadline_ms\31' .. deadline .. '\31claimed_ms\31' .. at .. '\31ttl_ms\31' .. ttl_text
        .. '\31attempts\31' .. attempts .. '\31claim_eid\31' .. eid, 18)
    elseif from then
      reply_task(out, best, raw, 'state\31claimed\31updated_ms\31' .. at .. '\31' .. table.concat(more, '\31'),
        4 + #more)
    else
      reply_task(out, best, fields_of(t))  -- assigned or owned: leave may have written fields
    end
    return true
  end
  return false
end

-- claim-1.lua's work (its header says what and in what order), shared with complete-1.lua,
-- which claims the completing agent's next task in the same call. The caller has read the
-- clock (now) and swept what fell due (sweep_due). reset: as touch_agent's.
-- out: the reply so far, which the claim's reply follows in the same table (nil: none). One
-- flat reply, not one nested in another: Redis 7.0 turns each table of a reply into RESP with
-- seven lookups of its own (err, ok, double, ...) and a deferred length (~3k instructions).
local function claim_tasks(P, agent, ttl_arg, qtext, count_arg, now, reset, out)
  out = out or {}
  local ttl, ttl_text = small_int(ttl_arg)
  local count = small_int(count_arg)
  if count > ${claim_batch_max} then count = ${claim_batch_max} end
  local ak = P .. 'agent:' .. agent
  -- The fields a claim reads, not the whole record (into locals: a table costs Redis more).
  local af = rcall('HMGET', ak, 'name', 'caps', 'max_claims', 'breaker_open_until_ms', 'touched_s',
    'consecutive_failures', 'full', 'solo')
  local known, a_caps, max_claims, open_until = af[1], af[2] or '', af[3], af[4]
  if claims_next == agent and af[7] == '1' then free_room(P, agent, '1') end  -- leave left it to us
  local touched = known and af[5] == clock_s and now == clock
  if not known then
    a_caps, max_claims = '', ${default_max_claims}
    -- auto: retention removes it once it holds nothing and was not seen for a while.
    rcall('HSET', ak, 'name', agent, 'caps', '', 'max_claims', max_claims, 'registered_ms', now, 'auto', '1')
    rcall('SADD', P .. 'agents', agent)
    audit(P, now, 'registered', '', agent, '', {auto = true})
  end
  -- An agent claiming in a loop is seen again within ms: its record and place on the ring are
  -- written at most once a second of the clock (touch_agent; two commands a claim otherwise).
  if not touched then
    touch_agent(P, agent, now, reset)
  elseif reset and (af[6] or '0') ~= '0' then
    rcall('HSET', ak, 'consecutive_failures', '0')
  end
  -- Its won, assigned and owned tasks, which a board without auctions, reassignment or
  -- affinity never has. `solo` on its record says it had none when last looked (written
  -- here; every write to won:, assigned: or affine: takes it away, lib.lua give_personal):
  -- then no command at all. Else one command says whether any of the three exists (~20k
  -- instructions less than reading each).
  local personal = false
  if af[8] ~= '1' then
    personal = rcall('EXISTS', P .. 'won:' .. agent, P .. 'assigned:' .. agent, P .. 'affine:' .. agent) > 0
    if not personal and known then rcall('HSET', ak, 'solo', '1') end
  end
  -- Claims it won in an auction come first (already its own: no capacity or breaker check).
  if personal then
    local won = won_claims(P, agent, count, now)
    if #won > 0 then
      out[#out + 1] = 0
      for i = 1, #won, 2 do reply_task(out, won[i], won[i + 1]) end
      return out
    end
  end
  -- (A breaker that never opened has no such field, most agents: no tonumber.)
  open_until = open_until and tonumber(open_until) or 0
  if open_until > now then return claim_miss(out, 'breaker-open', open_until - now, a_caps) end
  local room = small_int(max_claims) - rcall('SCARD', P .. 'held:' .. agent)
  if room <= 0 then
    rcall('HSET', ak, 'full', '1')  -- so the end of one of its claims says so (lib.lua leave)
    return claim_miss(out, 'at-capacity', -1, a_caps)
  end
  if count > room then count = room end
  -- The same for every task of this call: as text once (int_text).
  local deadline = int_text(now + ttl)

  -- Most claims: one task, by an agent that needs no capability and has nothing of its own,
  -- from any queue, while one queue has tasks needing nothing ready (one entry in
  -- heads:''). Its head is the task to take, with none of the ranking below (~100 Lua steps
  -- a claim less; an interpreter step costs Redis about as much as a dozen instructions, as
  -- its jump to the next one is mispredicted so often). Anything else goes the general way:
  -- several queues to rank (ranked, then: the scores are wanted at once) or an emptied set.
  local ranked = false
  if count == 1 and a_caps == '' and qtext == '' and not personal then
    local head = rcall('ZRANGE', P .. 'heads:', '0', '1')
    if #head == 0 then return claim_empty(P, out, now, a_caps) end
    if #head == 1 then
      local taken = rcall('ZPOPMIN', P .. 'ready:' .. head[1] .. ':')
      if #taken == 0 then
        ready_gone(P, head[1], '')  -- a claim of one left it empty (below); then look again
      else
        out[#out + 1] = 0
        if claim_task(P, out, taken[1], '', agent, now, now + ttl, deadline, ttl_text) then return out end
        out[#out] = nil  -- its hash was gone: look again
      end
    end
    ranked = #head > 1
  end

  local caps = EMPTY
  if a_caps ~= '' then
    caps = {}
    for _, c in ipairs(split(a_caps)) do caps[c] = true end
  end
  local queues = nil
  if qtext ~= '' then queues = split(qtext) end

  -- The signatures the agent can take (sig_of[1..n]), each one's best head (score_of,
  -- queue_of) and its runner-up queue's head score (runner_of), or none.
  local several = count > 1 and not personal
  -- Tasks needing nothing, which any agent takes: not in sigs (count_sig). An agent with no
  -- capabilities can take no other signature: no command to list them.
  local n = 1
  sig_of[1] = ''
  if a_caps ~= '' then
    local in_use = rcall('HKEYS', P .. 'sigs')
    for i = 1, #in_use do
      -- ('' is there too on a board an older claimroom counted it on.)
      if in_use[i] ~= '' and can_take(caps, in_use[i]) then n = n + 1; sig_of[n] = in_use[i] end
    end
  end
  -- Scores are compared only between signatures, queues, or with an owned task.
  local unranked = n == 1 and not personal and not ranked
  for i = 1, n do
    score_of[i], queue_of[i], runner_of[i] = claim_head(P, sig_of[i], queues, unranked)
  end

  local base, claimed = #out, 0  -- claimed: how many tasks out holds (reply_task)
  out[base + 1] = 0
  -- One task, or several at once from one ready set: a claim of several tasks takes from
  -- the best ready set every task that comes before any other set's head (the runner-up
  -- queue of its signature, the other signatures' heads) in one ZPOPMIN, and refreshes
  -- that set's place in heads:<sig> once.
  while claimed < count do
    -- taken: the ids this round claims, each with its score; rk their ready set, emptied when
    -- fewer came out of it than were asked for
    local taken, from, q, rk, rival, fi, emptied = EMPTY, nil, nil, nil, nil, nil, false
    local mine = personal and rcall('ZRANGE', P .. 'assigned:' .. agent, '0', '0', 'WITHSCORES') or EMPTY
    if #mine > 0 then
      taken = mine
    else
      local top
      for i = 1, n do
        local sc = score_of[i]
        if sc and (not top or sc < top) then top, fi = sc, i end
      end
      from = top and sig_of[fi]
      local own_score, own_id = nil, nil
      if personal then own_score, own_id = own_head(P, agent, queues, caps) end
      if own_score and (not top or own_score < top) then
        taken, from = {own_id, own_score}, nil  -- leave takes it out of the owner index
      elseif not top then
        break
      else
        -- The heads leave their ready set here (leave is told so): one command for all.
        q = queue_of[fi]
        rk = P .. 'ready:' .. q .. ':' .. from
        -- What the tasks taken may not pass: the runner-up queue's head of their signature,
        -- the other signatures' heads, the agent's own task.
        rival = runner_of[fi]
        for i = 1, n do
          local sc = score_of[i]
          if i ~= fi and sc and (not rival or sc < rival) then rival = sc end
        end
        if own_score and (not rival or own_score < rival) then rival = own_score end
        local need = several and count - claimed or 1
        taken = need > 1 and rcall('ZPOPMIN', rk, int_text(need)) or rcall('ZPOPMIN', rk)
        emptied = #taken < 2 * need
        if rival and #taken > 0 and tonumber(taken[2]) > rival then
          -- Its place in heads:<sig> was below its head (a claim with no rival leaves it so,
          -- see below): all go back, the place becomes the head's, and the choice is made again.
          local back = {}
          for i = 1, #taken, 2 do back[#back + 1], back[#back + 2] = taken[i + 1], taken[i] end
          rcall('ZADD', rk, unpack(back))
          rcall('ZADD', P .. 'heads:' .. from, 'XX', taken[2], q)
          taken, rk = EMPTY, nil
        elseif need > 1 and rival then
          -- Those past another set's head go back: they are not the best any more.
          local back = nil
          for i = 3, #taken, 2 do
            if tonumber(taken[i + 1]) > rival then
              back = back or {}
              back[#back + 1], back[#back + 2] = taken[i + 1], taken[i]
              taken[i], taken[i + 1] = nil, nil
            end
          end
          if back then rcall('ZADD', rk, unpack(back)) end
        end
        if #taken == 0 and rk then  -- a head without a task (a claim of one left it, below): it goes
          ready_gone(P, q, from)
        end
      end
    end
    for i = 1, #taken, 2 do
      if claim_task(P, out, taken[i], from, agent, now, now + ttl, deadline, ttl_text) then claimed = claimed + 1 end
    end
    if q then      -- The set's place in heads:<sig> follows its new head when anything could rank against
      -- it (a rival now, or queues chosen: other claims see other queues beside it). With
      -- none it stays where it was, below the new head (the first claim that finds a rival
      -- puts it right, above): two commands less on every claim of a one-queue board. A set
      -- left empty leaves the indexes when that is known: fewer tasks came out than were asked
      -- for. A claim of one task with no rival cannot tell (a ZCARD, ~3k instructions, would)
      -- and leaves its entries for the next claim to look there, which finds it empty and takes
      -- them out (above); until then the set's queue is listed with no ready task.
      if #taken > 0 and (rival or queues or emptied) then ready_refresh(P, q, from) end
      if claimed < count then  -- its next head, for the next round
        score_of[fi], queue_of[fi], runner_of[fi] = claim_head(P, from, queues, unranked)
      end
    end
  end
  if claimed > 0 then return out end
  out[base + 1] = nil  -- the 0 a claim would have begun with
  return claim_empty(P, out, now, a_caps)
end

-- A function library's locals outlive a call: what one call gathers starts empty in the next.
local function begin_call()
  rcall = redis.call
  -- New tables only when the last call left something (left_over: a table costs Redis ~2k
  -- instructions to make, and most calls announce and cascade nothing).
  if left_over then
    announced, cascade_log, auction_log = {}, {cancelled = {}, restored = {}}, {}
    cascade_budget, plan_rolling_back, left_over = ${cascade_batch}, nil, false
  end
  claims_next, hinted, due_seen, due_text = nil, false, nil, nil
end
