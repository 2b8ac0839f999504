--[[
settle: close a hold as charged, exactly once.

The balance moved when the hold was taken, so the `settle` ledger entry has amount 0 and records the
charge in `charged`. A hold already settled or released is left alone and reported as such.

KEYS[1]  hold hash           <prefix>:hold:<job id>
KEYS[2]  open holds zset     <prefix>:holds
KEYS[3]  account holds set   <prefix>:account:<account id>:holds
KEYS[4]  ledger stream       <prefix>:account:<account id>:ledger
ARGV[1]  job id
ARGV[2]  now, Unix ms
ARGV[3]  seconds to keep the closed hold (so a late duplicate still finds it)

Returns one of
  {'settled', amount, ledger_entry_id}
  {'already_settled', amount}
  {'already_released', amount}
  {'not_found'}
]]
local hold, open_holds, account_holds, ledger = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job, now, keep = ARGV[1], ARGV[2], ARGV[3]

local h = redis.call('HMGET', hold, 'amount', 'state')
local amount, state = h[1], h[2]
if not amount then return {'not_found'} end
if state == 'settled' then return {'already_settled', amount} end
if state == 'released' then return {'already_released', amount} end

redis.call('HSET', hold, 'state', 'settled', 'closed_at', now)
redis.call('EXPIRE', hold, keep)
redis.call('ZREM', open_holds, job)
redis.call('SREM', account_holds, job)
local id = redis.call('XADD', ledger, '*', 'type', 'settle', 'amount', '0', 'charged', amount, 'job_id', job, 'at', now)
return {'settled', amount, id}
