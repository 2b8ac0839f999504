--[[
rate-limit: a sliding-window log. Counts the requests of the last `window` ms; under the limit, records
this one and allows it; at the limit, refuses it (a refused request is not recorded) and says when the
oldest request in the window leaves it. Time is Redis's own clock, so every API process shares one.

KEYS[1]  window zset  <prefix>:rate:<subject>   (member: a request's unique id, score: its time in ms)
ARGV[1]  window, ms
ARGV[2]  limit (requests per window)
ARGV[3]  member (unique per request)

Returns {1, remaining} when allowed, {0, retry_after_ms} when refused.
]]
local key = KEYS[1]
local window, limit, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return {1, limit - count - 1}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, math.max(1, tonumber(oldest[2]) + window - now)}
