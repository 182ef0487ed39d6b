--[[
  token_create: keep a new bearer token: its sha256 only, with the agent, role and hint.
  KEYS[1] `events`, the audit stream
  ARGV[1] prefix P   ARGV[2] sha256 of the token (hex)   ARGV[3] agent   ARGV[4] role
  ARGV[5] hint (the token's first characters)
  Touches P .. taskevents:<id>, tokens
  Publishes on P .. hints
  Returns {0, created_ms}; {-5, message} when the board holds ${max_tokens} tokens already.
]]
--@include lib
local P, digest, agent, role, hint = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = now_ms()
local key = P .. 'tokens'
if rcall('HLEN', key) >= ${max_tokens} then
  return {-5, 'this board holds ${max_tokens} tokens already: revoke some first (claimroom token revoke AGENT)'}
end
rcall('HSET', key, digest, cjson.encode({agent = agent, role = role, created_ms = now, hint = hint}))
audit(P, now, 'token-created', '', agent, '', {role = role, hint = hint})
return {0, now}
