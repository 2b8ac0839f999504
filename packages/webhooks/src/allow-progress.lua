-- Lets through at most one progress event per job and window, and none once the job completed.
-- KEYS[1]  the job's completed marker
-- KEYS[2]  the job's progress throttle key
-- ARGV[1]  the window (ms)
-- Returns  1 when this progress event may be emitted, 0 when throttled or after completion.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
