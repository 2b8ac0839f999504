-- Lets through at most one progress event per job and window, and none once the job completed.
-- KEYS[1]  the job's completed marker
-- KEYS[2]  the job's progress throttle key
-- ARGV[1]  the window (ms)
-- Returns  Redis's clock in ms when this progress event may be emitted (the event is stamped with it,
--          so stamps are a window apart by the clock that timed the window), 0 when throttled or after
--          completion.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
return 0
