--[[
  send: one message from an agent (or an operator) to an agent, or to every agent, with
  its audit event ("message": from, to, id, size in bytes; never the text).
  The inbox (or the broadcast log) keeps its newest ${inbox_max} (${broadcasts_max}); the oldest go, and
  with them their read marks. The box joins `messages:boxes` (scored by its oldest message's
  time, or earlier: retention looks at it then and finds what is past the horizon).
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] sender: an agent, or "operator:NAME"   ARGV[3] recipient: an
  agent, "" every agent   ARGV[4] text (checked by core/messages.py)
  Touches P .. agent:<name>, broadcasts, inbox:<agent>, inboxread:<agent>, messages:boxes,
    seq:message, taskevents:<id>
  Publishes on P .. hints, wake:<agent>, claimable
  Returns {0, message id, at_ms}; {NO_AGENT, name} when the recipient, or a sender that is
  no operator, is not a registered agent.
]]
--@include lib
local P, sender, to, text = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local operator = string.sub(sender, 1, 9) == 'operator:'
if not operator and rcall('EXISTS', P .. 'agent:' .. sender) == 0 then return {-10, sender} end
if to ~= '' and rcall('EXISTS', P .. 'agent:' .. to) == 0 then return {-10, to} end
local now = now_ms()
local id = rcall('INCR', P .. 'seq:message')
local key, cap, box = P .. 'broadcasts', ${broadcasts_max}, '*'
if to ~= '' then key, cap, box = P .. 'inbox:' .. to, ${inbox_max}, to end
rcall('ZADD', key, id, cjson.encode({id = id, sender = sender, to = to, text = text, at_ms = now}))
local over = rcall('ZCARD', key) - cap
if over > 0 then
  rcall('ZREMRANGEBYRANK', key, '0', over - 1)
  if to ~= '' then
    -- The read marks of the inbox are exactly its ids: the oldest go with their messages.
    -- (A broadcast's marks are per agent: each agent drops its stale ones when it reads.)
    local first = rcall('ZRANGE', key, '0', '0', 'WITHSCORES')
    rcall('ZREMRANGEBYSCORE', P .. 'inboxread:' .. to, '-inf', '(' .. first[2])
  end
end
rcall('ZADD', P .. 'messages:boxes', 'NX', now, box)
if to ~= '' then
  rcall('PUBLISH', P .. 'wake:' .. to, 'message')
else
  announce(P .. 'claimable', '* *')  -- every waiting claimer looks at its inbox
end
local data = {from = sender, to = to ~= '' and to or '*', id = id, size = string.len(text)}
if operator then
  audit(P, now, 'message', '', '', '', data, string.sub(sender, 10))
else
  audit(P, now, 'message', '', sender, '', data)
end
return {0, id, now}
