-- Disables an account's default webhook, but only if it is still the URL a delivery was sent to: a client
-- that set a new URL meanwhile must not lose it because the old one answered 410.
-- KEYS[1]  the account's webhook hash (fields `url`, `url_disabled_at`, `url_disabled_reason`)
-- ARGV[1]  the URL expected ('' = whatever is set)
-- ARGV[2]  disabled at (ISO 8601)
-- ARGV[3]  reason
-- Returns  1 when disabled now, 0 when no such URL is set or it was disabled already.
local url = redis.call('HGET', KEYS[1], 'url')
if not url or (ARGV[1] ~= '' and url ~= ARGV[1]) then return 0 end
if redis.call('HEXISTS', KEYS[1], 'url_disabled_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'url_disabled_at', ARGV[2], 'url_disabled_reason', ARGV[3])
return 1
