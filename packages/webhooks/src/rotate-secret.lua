-- Rotates an account's webhook secret: the new one becomes current, the replaced one stays valid for signing
-- until the end of its grace period.
-- KEYS[1]  the account's webhook hash (field `secret`)
-- KEYS[2]  previous secrets: sorted set, secret -> valid until (Unix ms)
-- ARGV[1]  the new secret
-- ARGV[2]  now (Unix ms); previous secrets that ended by then are dropped
-- ARGV[3]  until when the replaced secret stays valid (Unix ms)
-- ARGV[4]  how many previous secrets are kept at most (those ending last survive)
-- Returns  1 when a secret was replaced, 0 when the account had none yet.
local current = redis.call('HGET', KEYS[1], 'secret')
redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'secret_created_at', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if not current then return 0 end
local untilMs = tonumber(ARGV[3])
if untilMs > tonumber(ARGV[2]) then
  -- Rotations within one millisecond still order by age: the later-replaced secret ends last.
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= untilMs then untilMs = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[2], untilMs, current)
end
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1) end
return 1
