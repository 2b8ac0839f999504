--[[
idempotency-finish: end a claim taken by idempotency-begin. 'complete' records the job the request
created and keeps it for the key's lifetime; 'abort' frees the key (the request failed before creating a
job, so a retry may try again). Only the claim's owner (same token) may finish it, so a request whose
claim expired cannot overwrite or free a later request's claim.

KEYS[1]  claim hash  <prefix>:idempotency:<account id>:<sha256 of the key>
ARGV[1]  action: complete | abort
ARGV[2]  token
ARGV[3]  job id (complete)
ARGV[4]  ttl, ms (complete: how long the key answers with this job)

Returns 1 when finished, 0 when the claim is not the caller's (expired, or taken by another request).
]]
local claim = KEYS[1]
local action, token, job, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local c = redis.call('HMGET', claim, 'state', 'token')
if c[1] ~= 'pending' or c[2] ~= token then return 0 end
if action == 'complete' then
  redis.call('HSET', claim, 'state', 'done', 'job_id', job)
  redis.call('PEXPIRE', claim, ttl)
else
  redis.call('DEL', claim)
end
return 1
