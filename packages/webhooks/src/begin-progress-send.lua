-- Marks a progress delivery as in flight unless the job has completed. The completed delivery waits until
-- no progress delivery is in flight, so a progress delivery never reaches a receiver after the completed
-- one. Atomic so that no progress delivery can start between the check and the mark.
-- KEYS[1]  the job's completed marker
-- KEYS[2]  the job's in-flight progress deliveries: sorted set, delivery id -> in flight until (Unix ms)
-- ARGV[1]  the delivery id
-- ARGV[2]  in flight until (Unix ms): past the attempt's timeout, so a crashed process cannot block forever
-- Returns  1 when the delivery may be sent, 0 when the job completed (the progress is superseded).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 1
