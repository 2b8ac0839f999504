--[[
release: close a hold by giving its amount back, exactly once.

Appends a `release` ledger entry of +amount with the reason (failed, canceled, expired, job_gone...) and
increments the balance. A hold already settled or released is left alone and reported as such.

KEYS[1]  hold hash           <prefix>:hold:<job id>
KEYS[2]  open holds zset     <prefix>:holds
KEYS[3]  account holds set   <prefix>:account:<account id>:holds
KEYS[4]  ledger stream       <prefix>:account:<account id>:ledger
KEYS[5]  balance             <prefix>:account:<account id>:balance
ARGV[1]  job id
ARGV[2]  reason
ARGV[3]  now, Unix ms
ARGV[4]  seconds to keep the closed hold (so a late duplicate still finds it)

Returns one of
  {'released', amount, balance_after, ledger_entry_id}
  {'already_released', amount}
  {'already_settled', amount}
  {'not_found'}
]]
local hold, open_holds, account_holds, ledger, balance_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job, reason, now, keep = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local h = redis.call('HMGET', hold, 'amount', 'state')
local amount, state = h[1], h[2]
if not amount then return {'not_found'} end
if state == 'settled' then return {'already_settled', amount} end
if state == 'released' then return {'already_released', amount} end

redis.call('HSET', hold, 'state', 'released', 'closed_at', now, 'reason', reason)
redis.call('EXPIRE', hold, keep)
redis.call('ZREM', open_holds, job)
redis.call('SREM', account_holds, job)
local after = redis.call('INCRBY', balance_key, amount)
local id = redis.call('XADD', ledger, '*', 'type', 'release', 'amount', amount, 'job_id', job, 'reason', reason, 'at', now)
return {'released', amount, after, id}
