--[[
idempotency-begin: claim an Idempotency-Key for a request, or say what became of the first request that
used it, atomically (two identical requests arriving together: exactly one gets 'new').

KEYS[1]  claim hash  <prefix>:idempotency:<account id>:<sha256 of the key>
ARGV[1]  body hash   (the request's fingerprint)
ARGV[2]  token       (random; proves ownership to complete/abort)
ARGV[3]  pending ttl, ms (a claim whose request died is freed after this)

Returns one of
  {'new'}               the caller owns the key: accept the request, then complete or abort
  {'done', job_id}      a request with this body was accepted: answer with its job
  {'mismatch'}          the key was used with another body
  {'in_progress'}       the first request is still being accepted
]]
local claim = KEYS[1]
local body, token, pending_ttl = ARGV[1], ARGV[2], ARGV[3]

local c = redis.call('HMGET', claim, 'state', 'body', 'job_id')
if not c[1] then
  redis.call('HSET', claim, 'state', 'pending', 'body', body, 'token', token)
  redis.call('PEXPIRE', claim, pending_ttl)
  return {'new'}
end
if c[2] ~= body then return {'mismatch'} end
if c[1] == 'done' then return {'done', c[3]} end
return {'in_progress'}
